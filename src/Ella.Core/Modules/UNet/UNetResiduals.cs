using static TorchSharp.torch;

namespace Ella.Modules.UNet;

/// <summary>
/// diffusers' <c>down_block_additional_residuals</c> and <c>mid_block_additional_residual</c>: one tensor per skip
/// output of the down blocks (conv_in's output first) and one for the mid block's output (what a ControlNet returns).
/// </summary>
public sealed record UNetResiduals(IReadOnlyList<Tensor> Down, Tensor Mid)
{
    internal void AddToSkips(List<Tensor> skips)
    {
        if (Down.Count != skips.Count)
            throw new EllaException($"UNet: {Down.Count} down-block residuals for {skips.Count} skip outputs (the ControlNet does not match this UNet)");
        for (int i = 0; i < skips.Count; i++) skips[i] = skips[i] + Down[i];
    }

    /// <summary>Element-wise sum (several ControlNets), as diffusers' MultiControlNetModel does.</summary>
    public static UNetResiduals Sum(UNetResiduals a, UNetResiduals b) =>
        new(a.Down.Zip(b.Down, (x, y) => x + y).ToList(), a.Mid + b.Mid);
}
