using Ella.Text;
using Microsoft.ML.Tokenizers;

namespace Ella.TextEncoders;

/// <summary>
/// transformers' uncased <c>BertTokenizer</c> (basic tokenization: clean text, split CJK, lower case, strip accents,
/// split punctuation; then WordPiece with <c>##</c> continuations) over a <c>vocab.txt</c>, by Microsoft.ML.Tokenizers'
/// <see cref="BertTokenizer"/>. Ids are <c>[CLS] … [SEP]</c>; fixed length pads with [PAD] (id 0) and a zero mask.
/// </summary>
public sealed class BertWordPieceTokenizer
{
    readonly BertTokenizer _bert;

    /// <summary>The model's limit (position embeddings or sentence-transformers' max_seq_length).</summary>
    public int ModelMaxLength { get; }
    public int ClsId => _bert.ClassificationTokenId;
    public int SepId => _bert.SeparatorTokenId;
    public int PadId => _bert.PaddingTokenId;
    public int UnkId => _bert.UnknownTokenId;

    public BertWordPieceTokenizer(Stream vocab, int modelMaxLength)
    {
        ModelMaxLength = modelMaxLength;
        _bert = BertTokenizer.Create(vocab, new BertOptions
        {
            LowerCaseBeforeTokenization = true,
            // transformers: strip_accents=None follows do_lower_case=True, so accents are stripped (NFD, drop Mn).
            RemoveNonSpacingMarks = true,
            ApplyBasicTokenization = true,
            IndividuallyTokenizeCjk = true,
            SplitOnSpecialTokens = true,
            PreTokenizer = new BertBasicPreTokenizer(),
        });
    }

    /// <summary>Loads <c>vocab.txt</c> from a file or a folder holding one.</summary>
    public static BertWordPieceTokenizer FromFile(string path, int modelMaxLength)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "vocab.txt") : path;
        if (!File.Exists(file)) throw new EllaException($"{file}: WordPiece vocabulary (vocab.txt) not found");
        using var s = File.OpenRead(file);
        return new BertWordPieceTokenizer(s, modelMaxLength);
    }

    /// <summary>Ids with [CLS] first and [SEP] last, untruncated.</summary>
    public int[] EncodeIds(string text) => _bert.EncodeToIds(WhitespaceAsSpace(text), addSpecialTokens: true).ToArray();

    /// <summary>transformers' <c>_clean_text</c> turns tab, newline and carriage return into spaces; the library's
    /// normaliser drops them as control characters, which would join the words around them.</summary>
    static string WhitespaceAsSpace(string text) => text.Replace('\t', ' ').Replace('\n', ' ').Replace('\r', ' ');

    /// <summary>
    /// Flexible: the prompt's own ids, truncated to <paramref name="maxLength"/> or <see cref="ModelMaxLength"/> if longer. Fixed: padded or truncated
    /// to <paramref name="maxLength"/> as <c>tokenizer(text, max_length, padding="max_length", truncation=True)</c>
    /// does: [CLS], the first max_length−2 word pieces, [SEP], then [PAD]s.
    /// </summary>
    public TokenizedText Encode(string text, TokenLength mode, int maxLength)
    {
        int[] ids = EncodeIds(text);
        int limit = mode == TokenLength.Fixed ? maxLength : Math.Min(maxLength, ModelMaxLength);
        if (limit < 2) throw new EllaException($"max length must be at least 2, got {limit}");
        if (limit > ModelMaxLength) throw new EllaException($"max length {limit} exceeds this text encoder's limit of {ModelMaxLength} tokens");
        bool truncated = ids.Length > limit;
        var kept = truncated ? ids.Take(limit - 1).Append(SepId).ToArray() : ids;
        int length = mode == TokenLength.Fixed ? limit : kept.Length;
        var padded = Enumerable.Repeat(PadId, length).ToArray();
        var mask = new int[length];
        Array.Copy(kept, padded, kept.Length);
        for (int i = 0; i < kept.Length; i++) mask[i] = 1;
        return new TokenizedText(padded, mask, truncated, ids.Length);
    }

    /// <summary>The word pieces truncation to <paramref name="length"/> tokens drops, as text.</summary>
    public string DroppedText(string text, int length)
    {
        int[] ids = EncodeIds(text);
        return ids.Length <= length ? "" : Decode(ids[(length - 1)..^1]);
    }

    public string Decode(IEnumerable<int> ids) => _bert.Decode(ids, skipSpecialTokens: true) ?? "";
}
