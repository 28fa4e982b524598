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
        var failures = new List<string>();
        int count = 0;
        foreach (var (name, e) in EncodingFixtures.Entries(doc.RootElement))
        {
            count++;
            string text = e.GetProperty("text").GetString()!;
            int[] expected = EncodingFixtures.Ints(e, "ids");
            int[] ids = tokenizer.EncodeIds(text);
            if (!expected.SequenceEqual(ids)) { failures.Add($"{name}: expected [{string.Join(",", expected)}] got [{string.Join(",", ids)}]"); continue; }
            var fixedLen = tokenizer.Encode(text, 77);
            if (!e.GetProperty("ids_77").EnumerateArray().Select(x => x.GetInt32()).SequenceEqual(fixedLen.Ids)) failures.Add($"{name}: ids_77 differ");
            if (!e.GetProperty("mask_77").EnumerateArray().Select(x => x.GetInt32()).SequenceEqual(fixedLen.AttentionMask)) failures.Add($"{name}: mask_77 differs");
            if (e.TryGetProperty("truncated_at_77", out var tr) && tr.GetBoolean() != fixedLen.Truncated) failures.Add($"{name}: truncation flag differs");
        }
        Assert.True(count > 0);
        Assert.True(failures.Count == 0, $"{failures.Count}/{count} differ:\n" + string.Join("\n", failures.Take(15)));
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
