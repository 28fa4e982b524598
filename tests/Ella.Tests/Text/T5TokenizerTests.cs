using System.Text.Json;
using Ella.Tests.Infrastructure;
using Ella.Text;

namespace Ella.Tests.Text;

public class T5TokenizerTests
{
    static readonly Lazy<T5Tokenizer> Tokenizer = new(() => T5Tokenizer.FromPretrained(Fixtures.PathOf("text", "t5-tokenizer")));

    public static IEnumerable<object[]> EncodingFiles() =>
        Directory.GetFiles(Fixtures.PathOf("text", "t5-tokenizer"), "*_encodings.json").Order().Select(f => new object[] { Path.GetFileName(f) });

    [Theory]
    [MemberData(nameof(EncodingFiles))]
    public void Ids_equal_the_reference_tokenizer(string file)
    {
        using var doc = Fixtures.Json("text", "t5-tokenizer", file);
        EncodingFixtures.AssertAll(doc.RootElement, Tokenizer.Value.EncodeIds, t => Tokenizer.Value.Encode(t, TokenLength.Fixed, 128), 128);
    }

    [Fact]
    public void Sentinels_sit_at_the_end_in_reverse_order()
    {
        var t = Tokenizer.Value;
        Assert.Equal(2100, t.VocabSize);
        Assert.Equal([t.VocabSize - 1, T5Tokenizer.EosId], t.EncodeIds("<extra_id_0>"));
        Assert.Equal([t.VocabSize - 100, T5Tokenizer.EosId], t.EncodeIds("<extra_id_99>"));
        Assert.Equal([T5Tokenizer.EosId], t.EncodeIds(""));
    }

    [Fact]
    public void A_folder_with_only_tokenizer_json_gets_a_clear_error()
    {
        var dir = Directory.CreateTempSubdirectory("ella-t5tok-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), "{}");
            var e = Assert.Throws<EllaException>(() => T5Tokenizer.FromPretrained(dir));
            Assert.Contains("spiece.model", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
