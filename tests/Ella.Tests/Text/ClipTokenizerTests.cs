using System.Text.Json;
using Ella.Tests.Infrastructure;
using Ella.Text;

namespace Ella.Tests.Text;

public class ClipTokenizerTests
{
    static readonly Lazy<ClipTokenizer> FromHfFiles = new(() => ClipTokenizer.FromPretrained(Path.Combine(Fixtures.SharedData, "clip")));
    static readonly Lazy<ClipTokenizer> FromOpenAiGz = new(() => ClipTokenizer.FromOpenAiBpe(Path.Combine(Fixtures.SharedData, "clip", "bpe_simple_vocab_16e6.txt.gz")));

    public static IEnumerable<object[]> Cases() =>
        from f in Directory.GetFiles(Fixtures.PathOf("text", "clip-tokenizer"), "*_encodings.json").Order()
        from source in new[] { "hf", "openai-gz" }
        select new object[] { Path.GetFileName(f), source };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Ids_equal_the_reference_tokenizer(string file, string source)
    {
        var tokenizer = source == "hf" ? FromHfFiles.Value : FromOpenAiGz.Value;
        using var doc = Fixtures.Json("text", "clip-tokenizer", file);
        EncodingFixtures.AssertAll(doc.RootElement, tokenizer.EncodeIds, t => tokenizer.Encode(t, 77), 77);
    }

    [Fact]
    public void Special_ids_and_vocabulary_size()
    {
        var t = FromHfFiles.Value;
        Assert.Equal(49406, t.BosId);
        Assert.Equal(49407, t.EosId);
        Assert.Equal(49407, t.PadId);
        Assert.Equal(49408, t.VocabSize);
        Assert.Equal(49408, FromOpenAiGz.Value.VocabSize);
        Assert.Equal([49406, 49407], t.EncodeIds(""));
    }
}
