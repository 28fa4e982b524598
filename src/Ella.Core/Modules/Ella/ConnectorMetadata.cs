using Ella.Pipelines;
using Ella.TextEncoders;
using Ella.Weights;

namespace Ella.Modules.Ella;

/// <summary>
/// What a connector file says about itself beyond its config: <c>text_encoder</c> in the safetensors
/// <c>__metadata__</c> names the text encoder whose features it reads (<c>t5</c>, <c>minilm</c>, <c>arctic-xs</c>).
/// <c>ella train</c> writes it into every connector it saves; the released connector has none (it reads FLAN-T5-XL).
/// </summary>
public static class ConnectorMetadata
{
    public const string TextEncoderKey = "text_encoder";

    /// <summary>The metadata that marks a connector as reading <paramref name="kind"/>'s features.</summary>
    public static IReadOnlyDictionary<string, string> For(TextEncoderKind kind) =>
        new Dictionary<string, string> { [TextEncoderKey] = TextEncoderKinds.Name(kind) };

    /// <summary>The raw <c>text_encoder</c> metadata of a connector file (or of the connector in a folder), or null when absent.</summary>
    public static string? TextEncoder(string path)
    {
        using var source = Checkpoint.Open(File.Exists(path) ? path : ModelLocator.EllaFile(path));
        return source.Metadata.TryGetValue(TextEncoderKey, out var v) && !string.IsNullOrWhiteSpace(v) ? v.Trim() : null;
    }

    /// <summary>The text encoder a connector file names in its metadata, or null when it names none; an unknown name is an
    /// <see cref="EllaException"/> naming the file.</summary>
    public static TextEncoderKind? TextEncoderKindOf(string path)
    {
        if (TextEncoder(path) is not { } name) return null;
        if (!TextEncoderKinds.Names.Contains(name.ToLowerInvariant()))
            throw new EllaException($"{path}: the connector's metadata names text encoder '{name}', which this EllaSharp does not know (choose --text-encoder {string.Join("|", TextEncoderKinds.Names)})");
        return TextEncoderKinds.Parse(name);
    }
}
