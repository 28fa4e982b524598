using static TorchSharp.torch;

namespace Ella.Modules.UNet;

/// <summary>
/// diffusers' <c>encoder_attention_mask</c>: [B, L], 1 for a condition token the cross-attention reads and 0 for
/// padding it skips, applied as an additive bias (1 − mask) · −10000 on the keys.
/// </summary>
public static class EncoderAttentionMask
{
    /// <returns>the bias [B, 1, 1, L] (float32, on the states' device), or null without a mask</returns>
    /// <param name="model">the model's name, for the error message</param>
    public static Tensor? Bias(Tensor? mask, Tensor encoderHiddenStates, string model)
    {
        if (mask is null) return null;
        long b = encoderHiddenStates.shape[0], l = encoderHiddenStates.shape[1];
        if (mask.dim() != 2 || mask.shape[0] != b || mask.shape[1] != l)
            throw new EllaException($"{model}: encoder attention mask [{string.Join(", ", mask.shape)}] does not match the encoder hidden states [{b}, {l}, …]");
        return ((1.0 - mask.to(ScalarType.Float32, encoderHiddenStates.device)) * -10000.0).view(b, 1, 1, l);
    }
}
