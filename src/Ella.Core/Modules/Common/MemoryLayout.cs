using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>
/// Channels-last ("NHWC") tensors: an NCHW tensor whose channels are adjacent in memory, the layout oneDNN's
/// convolutions and libtorch's GroupNorm run natively. TorchSharp has no memory_format argument, so the layout is
/// made with a permute and read from the strides.
/// </summary>
public static class MemoryLayout
{
    /// <summary>Whether a 4-D tensor with more than one channel has channel stride 1 (channels-last).</summary>
    public static bool IsChannelsLast(Tensor t) => t.dim() == 4 && t.shape[1] > 1 && t.stride(1) == 1;

    /// <summary>A channels-last copy of a 4-D tensor (the same logical NCHW shape), or the tensor itself when it already is.</summary>
    public static Tensor ToChannelsLast(Tensor t) =>
        t.dim() != 4 || IsChannelsLast(t) ? t.alias() : t.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);

    /// <summary>Stores every 4-D parameter of <paramref name="module"/> channels-last, in place (the values are unchanged).</summary>
    public static void ParametersToChannelsLast(nn.Module module)
    {
        using var _ = no_grad();
        foreach (var p in module.parameters())
            if (p.dim() == 4 && !IsChannelsLast(p))
            {
                using var copy = p.detach().permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
                p.set_(copy);
            }
    }
}
