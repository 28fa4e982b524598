using System.Text.Json;

namespace Ella.Configs;

/// <summary>
/// Bounds every config size must meet before a model is built: positive, and below what any real checkpoint uses by
/// far (so arithmetic on it cannot overflow). Whether a size matches the weights is checked against the safetensors
/// header afterwards, before anything is allocated.
/// </summary>
public static class ConfigChecks
{
    /// <summary>Largest accepted width, channel count or vocabulary (2^24: 16 million).</summary>
    public const int MaxSize = 1 << 24;
    /// <summary>Largest accepted layer count.</summary>
    public const int MaxLayers = 1024;

    public static void Size(string source, string key, int value)
    {
        if (value <= 0 || value > MaxSize) throw new EllaException($"{source}: {key} must be between 1 and {MaxSize}, got {value}");
    }

    public static void Count(string source, string key, int value)
    {
        if (value < 1 || value > MaxLayers) throw new EllaException($"{source}: {key} must be between 1 and {MaxLayers}, got {value}");
    }

    /// <summary>A config file's JSON, which must be an object (not null, an array or a number).</summary>
    public static T Deserialize<T>(string file, string json, string what)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object)
            throw new EllaException($"{file}: not a valid {what} (expected a JSON object, found {doc.RootElement.ValueKind})");
        return doc.RootElement.Deserialize<T>() ?? throw new EllaException($"{file}: not a valid {what}");
    }
}
