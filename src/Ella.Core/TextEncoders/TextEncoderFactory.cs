using Ella.Configs;
using static TorchSharp.torch;

namespace Ella.TextEncoders;

/// <summary>Builds the <see cref="ITextFeatureEncoder"/> of a kind: FLAN-T5 from a folder, MiniLM / arctic-xs from their NuGet packages.</summary>
public static class TextEncoderFactory
{
    /// <param name="path">T5: the transformers folder (required). MiniLM / arctic-xs: null for the packaged model, or a
    /// folder with model.onnx and vocab.txt.</param>
    public static ITextFeatureEncoder Create(TextEncoderKind kind, string? path, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (kind == TextEncoderKind.T5)
        {
            if (path == null) throw new EllaException("the t5 text encoder needs a FLAN-T5 folder (--t5)");
            return T5TextFeatureEncoder.FromPretrained(path, dtype, device);
        }
        var model = EmbeddedBertModel.For(kind);
        return path == null
            ? OnnxBertTextFeatureEncoder.FromEmbedded(model, dtype, device)
            : OnnxBertTextFeatureEncoder.FromFolder(path, model.ModelMaxLength, dtype, device);
    }

    /// <summary>The feature width without loading the model (T5: <c>d_model</c> of config.json).</summary>
    public static int HiddenSize(TextEncoderKind kind, string? path) =>
        kind == TextEncoderKind.T5 ? T5Config.Load(path ?? throw new EllaException("the t5 text encoder needs a FLAN-T5 folder (--t5)")).DModel
            : EmbeddedBertModel.For(kind).HiddenSize;
}
