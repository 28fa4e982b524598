using System.Text.Json;
using Ella.Text;

namespace Ella.Tests.Text;

/// <summary>The tokenizer fixtures' two layouts: {"prompts": {name: entry}} and {"cases": [{"name", ...}]}.</summary>
static class EncodingFixtures
{
    public static IEnumerable<(string Name, JsonElement Entry)> Entries(JsonElement root)
    {
        if (root.TryGetProperty("prompts", out var prompts))
            foreach (var p in prompts.EnumerateObject()) yield return (p.Name, p.Value);
        if (root.TryGetProperty("cases", out var cases))
            foreach (var c in cases.EnumerateArray()) yield return (c.GetProperty("name").GetString()!, c);
    }

    /// <summary>
    /// Checks every entry of an encodings file: untruncated ids, and ids / mask / truncation flag of the fixed-length
    /// call (keys <c>ids_N</c>, <c>mask_N</c>, <c>truncated_at_N</c>). All differences are reported together.
    /// </summary>
    public static void AssertAll(JsonElement root, Func<string, int[]> encodeIds, Func<string, TokenizedText> encodeFixed, int length)
    {
        var failures = new List<string>();
        int count = 0;
        foreach (var (name, e) in Entries(root))
        {
            count++;
            string text = e.GetProperty("text").GetString()!;
            int[] expected = Ints(e, "ids");
            int[] ids = encodeIds(text);
            if (!expected.SequenceEqual(ids)) { failures.Add($"{name}: expected [{string.Join(",", expected)}] got [{string.Join(",", ids)}]"); continue; }
            var fixedLen = encodeFixed(text);
            if (!Ints(e, $"ids_{length}").SequenceEqual(fixedLen.Ids)) failures.Add($"{name}: ids_{length} differ");
            if (!Ints(e, $"mask_{length}").SequenceEqual(fixedLen.AttentionMask)) failures.Add($"{name}: mask_{length} differs");
            if (e.TryGetProperty($"truncated_at_{length}", out var tr) && tr.GetBoolean() != fixedLen.Truncated) failures.Add($"{name}: truncation flag differs");
        }
        Assert.True(count > 0, "no entries");
        Assert.True(failures.Count == 0, $"{failures.Count}/{count} differ:\n" + string.Join("\n", failures.Take(15)));
    }

    public static int[] Ints(JsonElement e, string property) => e.GetProperty(property).EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
