using TorchSharp;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>
/// A latent-geometry regulariser (<c>ella world train --vae-latent-preview W</c>): a linear map with unit-norm rows
/// from the standardised latent (posterior mean / its batch std) to the image average-pooled to the latent's grid
/// must reproduce that image, so two colours lie at least as far apart in the latent (in units of its std) as their
/// RGB values do. Without it the encoder is free to put red within 0.83 of green where blue and yellow are 3.17
/// apart (the shipped VAE, in units of the latents' std; docs/shapes-world-experiments.md), and a base trained on
/// those latents learns blue and yellow long before red and green. The map is trained with the VAE (checkpointed as
/// vae-preview) and used only in training.
/// </summary>
public sealed class LatentPreview : nn.Module
{
    readonly TorchSharp.Modules.Parameter weight, bias;
    public double Weight { get; }

    public LatentPreview(int latentChannels, double weight) : base(nameof(LatentPreview))
    {
        Weight = weight > 0 && double.IsFinite(weight) ? weight : throw new ArgumentOutOfRangeException(nameof(weight), "the preview weight must be positive");
        this.weight = nn.Parameter(randn(3, latentChannels) / Math.Sqrt(latentChannels));
        bias = nn.Parameter(zeros(3));
        RegisterComponents();
    }

    /// <summary>MSE between the map of the standardised latent [B, C, h, w] and the image [B, 3, H, W] pooled to h×w.</summary>
    public Tensor Loss(Tensor latentMean, Tensor image)
    {
        using var scope = NewDisposeScope();
        var z = latentMean / (latentMean.std() + 1e-6);
        var rows = weight / weight.norm(1, keepdim: true);
        var preview = einsum("oc,bchw->bohw", rows, z) + bias.reshape(1, 3, 1, 1);
        var target = nn.functional.adaptive_avg_pool2d(image, [latentMean.shape[2], latentMean.shape[3]]);
        return (preview - target).pow(2).mean().MoveToOuterDisposeScope();
    }
}
