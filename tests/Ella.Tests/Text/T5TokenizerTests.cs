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
        var failures = new List<string>();
        int count = 0;
        foreach (var (name, e) in EncodingFixtures.Entries(doc.RootElement))
        {
            count++;
            string text = e.GetProperty("text").GetString()!;
            int[] expected = EncodingFixtures.Ints(e, "ids");
            int[] ids = Tokenizer.Value.EncodeIds(text);
            if (!expected.SequenceEqual(ids)) { failures.Add($"{name}: expected [{string.Join(",", expected)}] got [{string.Join(",", ids)}]"); continue; }
            var fixedLen = Tokenizer.Value.Encode(text, TokenLength.Fixed, 128);
            if (!e.GetProperty("ids_128").EnumerateArray().Select(x => x.GetInt32()).SequenceEqual(fixedLen.Ids)) failures.Add($"{name}: ids_128 differ");
            if (!e.GetProperty("mask_128").EnumerateArray().Select(x => x.GetInt32()).SequenceEqual(fixedLen.AttentionMask)) failures.Add($"{name}: mask_128 differs");
            if (e.TryGetProperty("truncated_at_128", out var tr) && tr.GetBoolean() != fixedLen.Truncated) failures.Add($"{name}: truncation flag differs");
        }
        Assert.True(count > 0);
        Assert.True(failures.Count == 0, $"{failures.Count}/{count} differ:\n" + string.Join("\n", failures.Take(15)));
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
