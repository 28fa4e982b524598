using Ella.Text;
using static TorchSharp.torch;

namespace Ella.TextEncoders;

/// <summary>
/// A frozen language model that turns a prompt into the token features the ELLA connector reads (FLAN-T5's encoder,
/// later MiniLM and others). One prompt per call: flexible length means every prompt keeps its own token count.
/// </summary>
public interface ITextFeatureEncoder : IDisposable
{
    /// <summary>What the encoder is (e.g. the model folder), for messages and metadata.</summary>
    string Name { get; }

    /// <summary>Width of the features (FLAN-T5-XL 2048, MiniLM 384); must equal the connector's <c>input_dim</c>.</summary>
    int HiddenSize { get; }

    /// <summary>
    /// Features of one prompt, [1, L, <see cref="HiddenSize"/>] in the encoder's dtype and device. Flexible: L is the
    /// prompt's own token count, capped at <paramref name="maxLength"/> (the end token kept last); fixed: L = <paramref name="maxLength"/> (padded, or truncated keeping the end token).
    /// </summary>
    EncodedText Encode(string prompt, TokenLength mode, int maxLength);
}

/// <summary>One prompt's features, and what truncation dropped (for a warning).</summary>
public sealed record EncodedText(Tensor Features, bool Truncated, int UntruncatedLength, string? DroppedText) : IDisposable
{
    public void Dispose() => Features.Dispose();
}
