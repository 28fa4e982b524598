using System.Globalization;
using System.Text.Json;
using Ella.Lora;
using Ella.Server.Api;

namespace Ella.Server.Tools;

/// <summary>
/// The <c>loras</c> field of a request: names of LoRA files in the server's <c>--lora-dir</c> with their multipliers,
/// as <c>["name", "name:0.8", {"name": "name", "weight": 0.8}]</c>. Only names are accepted, never paths, so a client
/// can load nothing outside that folder. (<c>&lt;lora:name:0.8&gt;</c> tags in the prompt work too, as in A1111.)
/// </summary>
public static class RequestLoras
{
    public const int MaxLoras = 8;

    public static IReadOnlyList<LoraSpec> Parse(JsonFields f, string? loraDir, string field = "loras")
    {
        if (!f.Root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return [];
        if (value.ValueKind != JsonValueKind.Array) throw ApiError.BadRequest($"'{field}' must be an array of LoRA names (\"name\", \"name:0.8\" or {{\"name\", \"weight\"}})", field, "invalid_type");
        if (value.GetArrayLength() > MaxLoras) throw ApiError.BadRequest($"'{field}' names {value.GetArrayLength()} LoRAs; at most {MaxLoras}", field);
        var specs = new List<LoraSpec>();
        foreach (var item in value.EnumerateArray())
        {
            var (name, weight) = item.ValueKind switch
            {
                JsonValueKind.String => Split(item.GetString()!, field),
                JsonValueKind.Object => FromObject(item, field),
                _ => throw ApiError.BadRequest($"'{field}': each entry is a string or an object with 'name' and 'weight'", field, "invalid_type"),
            };
            specs.Add(new LoraSpec(Resolve(name, loraDir, field), weight));
        }
        return specs;
    }

    /// <summary>The LoRA names in the folder (what /sdapi/v1/loras lists).</summary>
    public static IReadOnlyList<string> Available(string? loraDir) =>
        loraDir == null || !Directory.Exists(loraDir) ? []
            : Directory.GetFiles(loraDir, "*.safetensors").Select(Path.GetFileNameWithoutExtension).OfType<string>().Order(StringComparer.Ordinal).ToList();

    static (string, double) Split(string text, string field)
    {
        int colon = text.LastIndexOf(':');
        if (colon < 0) return (text, 1.0);
        if (!double.TryParse(text[(colon + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double w) || !double.IsFinite(w))
            throw ApiError.BadRequest($"'{field}': '{text}' has a weight that is not a number", field);
        return (text[..colon], w);
    }

    static (string, double) FromObject(JsonElement item, string field)
    {
        if (!item.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String)
            throw ApiError.BadRequest($"'{field}': an entry has no string 'name'", field, "invalid_type");
        double weight = 1.0;
        foreach (var key in new[] { "weight", "multiplier" })
            if (item.TryGetProperty(key, out var w) && w.ValueKind != JsonValueKind.Null)
            {
                if (w.ValueKind != JsonValueKind.Number || !w.TryGetDouble(out weight) || !double.IsFinite(weight))
                    throw ApiError.BadRequest($"'{field}': the {key} of '{n.GetString()}' must be a number", field, "invalid_type");
            }
        return (n.GetString()!, weight);
    }

    static string Resolve(string name, string? loraDir, string field)
    {
        name = name.Trim();
        if (name.Length == 0 || name.Contains('/') || name.Contains('\\') || name.Contains("..") || name.IndexOfAny(Path.GetInvalidFileNameChars()) >= 0)
            throw ApiError.BadRequest($"'{field}': '{name}' is not a LoRA name (names only, no paths)", field);
        if (loraDir == null) throw ApiError.BadRequest($"'{field}': this server has no LoRA folder (start it with --lora-dir)", field, "unsupported_value");
        string stem = name.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase) ? name[..^".safetensors".Length] : name;
        string path = Path.Combine(loraDir, stem + ".safetensors");
        if (!File.Exists(path)) throw ApiError.BadRequest($"'{field}': no LoRA '{stem}' in this server's --lora-dir (GET /sdapi/v1/loras lists them)", field, "lora_not_found");
        return path;
    }
}
