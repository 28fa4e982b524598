using System.Text.Json;

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

    public static int[] Ints(JsonElement e, string property) => e.GetProperty(property).EnumerateArray().Select(x => x.GetInt32()).ToArray();
}
