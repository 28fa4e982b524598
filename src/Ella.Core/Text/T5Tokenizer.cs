using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Ella.Text;

/// <summary>
/// transformers' <c>T5Tokenizer</c> (slow, legacy = true, the FLAN-T5 default) over a SentencePiece Unigram model read
/// by Microsoft.ML.Tokenizers. Added tokens (<c>&lt;pad&gt;</c>, <c>&lt;/s&gt;</c>, <c>&lt;unk&gt;</c>,
/// <c>&lt;extra_id_N&gt;</c>) are split out first, longest match wins; every other stretch is encoded on its own by
/// SentencePiece; <c>&lt;/s&gt;</c> (id 1) is appended unless already last. The 100 sentinels sit at the end of the
/// vocabulary in reverse order (<c>&lt;extra_id_0&gt;</c> is the last id).
/// </summary>
public sealed class T5Tokenizer
{
    public const int PadId = 0;
    public const int EosId = 1;
    public const int UnkId = 2;
    public const int DefaultMaxLength = 128;

    readonly SentencePieceTokenizer _sp;
    readonly Dictionary<string, int> _added;
    readonly string[] _addedByLength;
    readonly Dictionary<int, string> _idToAdded;

    /// <summary>Size of the id space: SentencePiece pieces plus the sentinels.</summary>
    public int VocabSize { get; }
    public int ExtraIds { get; }

    public T5Tokenizer(Stream spieceModel, int extraIds = 100)
    {
        var bytes = new MemoryStream();
        spieceModel.CopyTo(bytes);
        int pieces = SentencePieceModelFix.PieceCount(bytes.ToArray());
        using var fixedModel = new MemoryStream(SentencePieceModelFix.WithBosAsUnkIfAbsent(bytes.ToArray()));
        _sp = SentencePieceTokenizer.Create(fixedModel, addBeginningOfSentence: false, addEndOfSentence: false);
        ExtraIds = extraIds;
        VocabSize = pieces + extraIds;
        _added = new Dictionary<string, int>(StringComparer.Ordinal) { ["<pad>"] = PadId, ["</s>"] = EosId, ["<unk>"] = UnkId };
        for (int n = 0; n < extraIds; n++) _added[$"<extra_id_{n}>"] = VocabSize - 1 - n;
        _addedByLength = _added.Keys.OrderByDescending(k => k.Length).ToArray();
        _idToAdded = _added.ToDictionary(kv => kv.Value, kv => kv.Key);
    }

    /// <summary>
    /// Loads from a Hugging Face T5 folder (or a path to spiece.model): reads <c>spiece.model</c> and takes the sentinel
    /// count from <c>tokenizer_config.json</c> (<c>extra_ids</c>, default 100).
    /// </summary>
    public static T5Tokenizer FromPretrained(string path)
    {
        string folder = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path))!;
        string model = Directory.Exists(path) ? Path.Combine(path, "spiece.model") : path;
        if (!File.Exists(model))
        {
            if (File.Exists(Path.Combine(folder, "tokenizer.json")))
                throw new EllaException($"{folder}: only tokenizer.json is present; EllaSharp reads T5's SentencePiece model (spiece.model). " +
                                        "Copy spiece.model from the original model repository (e.g. google/flan-t5-xl) into this folder.");
            throw new EllaException($"{model}: T5 tokenizer model (spiece.model) not found");
        }
        int extraIds = 100;
        string cfg = Path.Combine(folder, "tokenizer_config.json");
        if (File.Exists(cfg))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(cfg));
                if (doc.RootElement.TryGetProperty("extra_ids", out var e) && e.ValueKind == JsonValueKind.Number) extraIds = e.GetInt32();
            }
            catch (JsonException ex) { throw new EllaException($"{cfg}: not valid JSON ({ex.Message})", ex); }
        }
        try
        {
            using var stream = File.OpenRead(model);
            return new T5Tokenizer(stream, extraIds);
        }
        catch (Exception ex) when (ex is not EllaException)
        {
            throw new EllaException($"{model}: not a readable SentencePiece model ({ex.Message})", ex);
        }
    }

    /// <summary>Token ids with <c>&lt;/s&gt;</c> appended, untruncated.</summary>
    public int[] EncodeIds(string text)
    {
        var ids = new List<int>();
        foreach (var (segment, addedId) in Split(text))
        {
            int start = ids.Count;
            if (addedId is { } id) ids.Add(id);
            else
            {
                // SentencePiece joins a run of unknown characters into one <unk>; ML.Tokenizers emits one per character.
                foreach (int piece in _sp.EncodeToIds(segment, addBeginningOfSentence: false, addEndOfSentence: false,
                             considerPreTokenization: true, considerNormalization: true))
                {
                    if (piece == UnkId && ids.Count > start && ids[^1] == UnkId) continue;
                    ids.Add(piece);
                }
            }
        }
        if (ids.Count == 0 || ids[^1] != EosId) ids.Add(EosId);
        return ids.ToArray();
    }

    /// <summary>The pieces of <paramref name="text"/> (without the appended end token), for debugging prompts.</summary>
    public IReadOnlyList<(string Piece, int Id)> Tokens(string text)
    {
        var result = new List<(string, int)>();
        foreach (var (segment, addedId) in Split(text))
        {
            if (addedId is { } id) result.Add((segment, id));
            else
            {
                int start = result.Count;
                foreach (var t in _sp.EncodeToTokens(segment, out _, addBeginningOfSentence: false, addEndOfSentence: false,
                             considerPreTokenization: true, considerNormalization: true))
                {
                    if (t.Id == UnkId && result.Count > start && result[^1].Item2 == UnkId)
                        result[^1] = (result[^1].Item1 + t.Value, UnkId);
                    else result.Add((t.Value, t.Id));
                }
            }
        }
        return result;
    }

    /// <summary>
    /// ELLA's two calls: flexible (<c>tokenizer(text)</c>, no padding) or fixed
    /// (<c>max_length, padding="max_length", truncation=True</c>: first max_length−1 ids, then <c>&lt;/s&gt;</c>, then pad 0).
    /// </summary>
    /// <param name="capFlexible">flexible mode too keeps at most <paramref name="maxLength"/> ids (the first
    /// maxLength−1, then <c>&lt;/s&gt;</c>), without padding</param>
    public TokenizedText Encode(string text, TokenLength mode = TokenLength.Flexible, int maxLength = DefaultMaxLength, bool capFlexible = false)
    {
        if (mode == TokenLength.Fixed || capFlexible)
        {
            if (maxLength < 1) throw new EllaException($"max length must be at least 1, got {maxLength}");
            // A text far longer than max length tokens is cut before tokenizing (a 1 MB prompt).
            text = PromptText.Prefix(text, maxLength + 1);
        }
        int[] ids = EncodeIds(text);
        if (mode == TokenLength.Flexible && (!capFlexible || ids.Length <= maxLength))
            return new TokenizedText(ids, Enumerable.Repeat(1, ids.Length).ToArray(), false, ids.Length);
        if (mode == TokenLength.Flexible)
        {
            var cut = ids.Take(maxLength - 1).Append(EosId).ToArray();
            return new TokenizedText(cut, Enumerable.Repeat(1, cut.Length).ToArray(), true, ids.Length);
        }
        bool truncated = ids.Length > maxLength;
        var kept = truncated ? ids.Take(maxLength - 1).Append(EosId).ToArray() : ids;
        var padded = new int[maxLength];
        var mask = new int[maxLength];
        Array.Copy(kept, padded, kept.Length);
        for (int i = 0; i < kept.Length; i++) mask[i] = 1;
        return new TokenizedText(padded, mask, truncated, ids.Length);
    }

    /// <summary>What truncation to <paramref name="maxLength"/> tokens drops (at most 64 tokens of it), for warnings.</summary>
    public string DroppedText(string text, int maxLength)
    {
        var ids = EncodeIds(PromptText.Prefix(text, maxLength + 64));
        return ids.Length <= maxLength ? "" : Decode(ids[(maxLength - 1)..^1]);
    }

    public string Decode(IEnumerable<int> ids) =>
        string.Concat(ids.Select(id => _idToAdded.TryGetValue(id, out var s) ? s : _sp.Decode([id]) is { } p ? p : ""));

    /// <summary>Splits text into added tokens (with their id) and ordinary stretches.</summary>
    IEnumerable<(string Segment, int? AddedId)> Split(string text)
    {
        int start = 0, i = 0;
        while (i < text.Length)
        {
            string? match = null;
            if (text[i] == '<')
                foreach (var token in _addedByLength)
                    if (string.CompareOrdinal(text, i, token, 0, token.Length) == 0) { match = token; break; }
            if (match == null) { i++; continue; }
            if (i > start) yield return (text[start..i], null);
            yield return (match, _added[match]);
            i += match.Length;
            start = i;
        }
        if (start < text.Length) yield return (text[start..], null);
    }
}
