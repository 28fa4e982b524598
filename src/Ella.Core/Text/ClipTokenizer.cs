using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Ella.Text;

/// <summary>
/// CLIP's byte-level BPE tokenizer (transformers' <c>CLIPTokenizer</c> as SD1.5 loads it), on Microsoft.ML.Tokenizers'
/// <see cref="BpeTokenizer"/> with byte-level symbols and the <c>&lt;/w&gt;</c> end-of-word suffix. Around it, the
/// steps CLIP adds: special literals split out first, whitespace runs folded to one space, ends stripped, lower-case,
/// CLIP's pre-tokenizer regex, then <c>[&lt;|startoftext|&gt;] + ids + [&lt;|endoftext|&gt;]</c>.
/// </summary>
/// <remarks>ftfy.fix_text is not applied (identity), as in the reference fixtures; see the README.</remarks>
public sealed class ClipTokenizer
{
    public const string StartToken = "<|startoftext|>";
    public const string EndToken = "<|endoftext|>";
    public const int DefaultMaxLength = 77;

    static readonly Regex ClipPattern = new(
        @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        RegexOptions.IgnoreCase | RegexOptions.Compiled);
    static readonly Regex Whitespace = new(@"\s+", RegexOptions.Compiled);

    readonly BpeTokenizer _bpe;
    readonly Dictionary<int, string> _idToToken;

    public int BosId { get; }
    public int EosId { get; }
    /// <summary>SD1.5 pads with &lt;|endoftext|&gt;; SD2's tokenizer uses "!" (id 0).</summary>
    public int PadId { get; }
    public int VocabSize => _idToToken.Count;
    public int ModelMaxLength { get; }

    ClipTokenizer(IReadOnlyDictionary<string, int> vocab, IEnumerable<string> merges, string padToken, int modelMaxLength)
    {
        if (!vocab.TryGetValue(StartToken, out int bos) || !vocab.TryGetValue(EndToken, out int eos))
            throw new EllaException($"CLIP vocabulary lacks {StartToken} or {EndToken}");
        BosId = bos;
        EosId = eos;
        PadId = vocab.TryGetValue(padToken, out int pad) ? pad : eos;
        ModelMaxLength = modelMaxLength;
        var specials = new Dictionary<string, int> { [StartToken] = bos, [EndToken] = eos };
        _bpe = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            EndOfWordSuffix = "</w>",
            SpecialTokens = specials,
            PreTokenizer = new RegexPreTokenizer(ClipPattern, specials),
        });
        _idToToken = vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
    }

    /// <summary>
    /// Loads a tokenizer folder (<c>vocab.json</c> + <c>merges.txt</c>, optional <c>tokenizer_config.json</c>), a
    /// folder holding <c>bpe_simple_vocab_16e6.txt.gz</c>, or that .gz file itself.
    /// </summary>
    public static ClipTokenizer FromPretrained(string path)
    {
        if (File.Exists(path) && path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) return FromOpenAiBpe(path);
        if (!Directory.Exists(path)) throw new EllaException($"{path}: CLIP tokenizer folder or bpe_simple_vocab_16e6.txt.gz not found");
        string vocabPath = Path.Combine(path, "vocab.json"), mergesPath = Path.Combine(path, "merges.txt");
        if (!File.Exists(vocabPath) || !File.Exists(mergesPath))
        {
            string gz = Path.Combine(path, "bpe_simple_vocab_16e6.txt.gz");
            if (File.Exists(gz)) return FromOpenAiBpe(gz);
            throw new EllaException($"{path}: a CLIP tokenizer needs vocab.json and merges.txt (or bpe_simple_vocab_16e6.txt.gz)");
        }
        Dictionary<string, int> vocab;
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(vocabPath))!; }
        catch (JsonException e) { throw new EllaException($"{vocabPath}: not a JSON token → id map ({e.Message})", e); }
        var merges = File.ReadLines(mergesPath).Where(l => !l.StartsWith("#version")).Where(l => l.Length > 0).ToList();
        string pad = EndToken;
        int maxLength = DefaultMaxLength;
        string cfg = Path.Combine(path, "tokenizer_config.json");
        if (File.Exists(cfg))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(cfg));
                if (doc.RootElement.TryGetProperty("pad_token", out var p))
                    pad = p.ValueKind == JsonValueKind.String ? p.GetString()! : p.TryGetProperty("content", out var c) ? c.GetString()! : pad;
                if (doc.RootElement.TryGetProperty("model_max_length", out var m) && m.TryGetInt64(out long ml) && ml is > 0 and < 100000) maxLength = (int)ml;
            }
            catch (JsonException e) { throw new EllaException($"{cfg}: not valid JSON ({e.Message})", e); }
        }
        return new ClipTokenizer(vocab, merges, pad, maxLength);
    }

    /// <summary>openai/CLIP's <c>bpe_simple_vocab_16e6.txt.gz</c>: merges are lines 2..48895; the vocabulary is the 256
    /// byte symbols, the same with &lt;/w&gt;, every merge concatenated, then the two special tokens.</summary>
    public static ClipTokenizer FromOpenAiBpe(string gzPath)
    {
        List<string> merges;
        try
        {
            using var gz = new GZipStream(File.OpenRead(gzPath), CompressionMode.Decompress);
            using var reader = new StreamReader(gz, Encoding.UTF8);
            merges = reader.ReadToEnd().Split('\n').Skip(1).Take(49152 - 256 - 2).ToList();
        }
        catch (InvalidDataException e) { throw new EllaException($"{gzPath}: not a gzip file ({e.Message})", e); }
        var symbols = ByteSymbols();
        var vocab = new Dictionary<string, int>();
        foreach (var s in symbols) vocab[s] = vocab.Count;
        foreach (var s in symbols) vocab[s + "</w>"] = vocab.Count;
        foreach (var m in merges) vocab[m.Replace(" ", "")] = vocab.Count;
        vocab[StartToken] = vocab.Count;
        vocab[EndToken] = vocab.Count;
        return new ClipTokenizer(vocab, merges, EndToken, DefaultMaxLength);
    }

    /// <summary>GPT-2's byte → printable-unicode table, in its own order.</summary>
    static List<string> ByteSymbols()
    {
        var bytes = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToList();
        var chars = new List<int>(bytes);
        int n = 0;
        for (int b = 0; b < 256; b++)
            if (!bytes.Contains(b)) { bytes.Add(b); chars.Add(256 + n++); }
        return chars.Select(c => ((char)c).ToString()).ToList();
    }

    /// <summary>Ids with start and end tokens, untruncated.</summary>
    public int[] EncodeIds(string text)
    {
        var ids = new List<int> { BosId };
        foreach (var (segment, special) in Split(text))
        {
            if (special is { } id) { ids.Add(id); continue; }
            string cleaned = Clean(segment);
            if (cleaned.Length > 0)
                ids.AddRange(_bpe.EncodeToIds(cleaned, considerPreTokenization: true, considerNormalization: false));
        }
        ids.Add(EosId);
        return ids.ToArray();
    }

    /// <summary>BPE tokens (without start/end), for debugging prompts.</summary>
    public IReadOnlyList<(string Token, int Id)> Tokens(string text)
    {
        var result = new List<(string, int)>();
        foreach (var (segment, special) in Split(text))
        {
            if (special is { } id) { result.Add((segment, id)); continue; }
            string cleaned = Clean(segment);
            if (cleaned.Length > 0) result.AddRange(_bpe.EncodeToIds(cleaned, true, false).Select(i => (_idToToken[i], i)));
        }
        return result;
    }

    /// <summary>
    /// SD's call <c>tokenizer(text, padding="max_length", max_length=77, truncation=True)</c>: the first max_length−2
    /// token ids between start and end, then padding.
    /// </summary>
    public TokenizedText Encode(string text, int? maxLength = null)
    {
        int max = maxLength ?? ModelMaxLength;
        if (max < 2) throw new EllaException($"CLIP max length must be at least 2, got {max}");
        int[] ids = EncodeIds(PromptText.Prefix(text, max + 1));
        bool truncated = ids.Length > max;
        var kept = truncated ? ids.Take(max - 1).Append(EosId).ToArray() : ids;
        var padded = Enumerable.Repeat(PadId, max).ToArray();
        var mask = new int[max];
        Array.Copy(kept, padded, kept.Length);
        for (int i = 0; i < kept.Length; i++) mask[i] = 1;
        return new TokenizedText(padded, mask, truncated, ids.Length);
    }

    /// <summary>Every text through <see cref="Encode"/>, as one [B, max_length] int64 tensor of input ids (what a batch feeds CLIP).</summary>
    public TorchSharp.torch.Tensor InputIds(IReadOnlyList<string> texts, int? maxLength = null, TorchSharp.torch.Device? device = null)
    {
        int max = maxLength ?? ModelMaxLength;
        var ids = texts.SelectMany(t => Encode(t, max).Ids.Select(id => (long)id)).ToArray();
        return TorchSharp.torch.tensor(ids, device: device).reshape(texts.Count, max);
    }

    public string Decode(IEnumerable<int> ids) => _bpe.Decode(ids) ?? "";

    /// <summary>The text that a fixed-length encoding keeps, for "truncated" warnings.</summary>
    public string TruncatedTail(string text, int? maxLength = null)
    {
        int max = maxLength ?? ModelMaxLength;
        int[] ids = EncodeIds(PromptText.Prefix(text, max + 64));
        return ids.Length <= max ? "" : Decode(ids.Skip(max - 1).Take(ids.Length - max));
    }

    static string Clean(string s) => Whitespace.Replace(s, " ").Trim().ToLowerInvariant();

    IEnumerable<(string Segment, int? Special)> Split(string text)
    {
        int start = 0;
        while (start < text.Length)
        {
            int a = text.IndexOf(StartToken, start, StringComparison.Ordinal);
            int b = text.IndexOf(EndToken, start, StringComparison.Ordinal);
            int next = a < 0 ? b : b < 0 ? a : Math.Min(a, b);
            if (next < 0) { yield return (text[start..], null); yield break; }
            if (next > start) yield return (text[start..next], null);
            bool isStart = next == a;
            yield return (isStart ? StartToken : EndToken, isStart ? BosId : EosId);
            start = next + (isStart ? StartToken.Length : EndToken.Length);
        }
    }
}
