using Ella.Modules.Vae;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>
/// Stage 1: the VAE learns to reconstruct world scenes through 16×16×4 latents. Loss: L1 + MSE of the reconstruction
/// from a posterior sample, plus a small KL term (<see cref="KlWeight"/> per latent element) that keeps the latent
/// distribution near N(0, 1) without costing detail. After training, <c>scaling_factor</c> = 1 / std of the latents.
/// </summary>
public static class VaeStage
{
    public const double KlWeight = 1e-6;

    public static Tensor Loss(AutoencoderKL vae, WorldBatches data, int step, Generator rng, LatentPreview? preview = null)
    {
        using var scope = NewDisposeScope();
        var x = WorldBatches.Images(data.Items(step));
        using var posterior = vae.Encode(x);
        var z = posterior.Mean + posterior.Std() * randn(posterior.Mean.shape, generator: rng);
        var recon = vae.Decode(z);
        var rec = (recon - x).abs().mean() + (recon - x).pow(2).mean();
        var kl = 0.5 * (posterior.Mean.pow(2) + posterior.Var() - 1 - posterior.LogVar).mean();
        var loss = rec + KlWeight * kl;
        if (preview != null) loss = loss + preview.Weight * preview.Loss(posterior.Mean, x);
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A latent-geometry regulariser (<c>ella world train --vae-latent-preview W</c>): a linear map with unit-norm rows
    /// from the standardised latent (posterior mean / its batch std) to the image average-pooled to the latent's grid
    /// must reproduce that image, so two colours lie at least as far apart in the latent (in units of its std) as their
    /// RGB values do. Without it the encoder is free to put red within 0.83 of green where blue and yellow are 3.17 apart
    /// (the shipped VAE, latent std units), and a base trained on those latents learns blue and yellow long before red
    /// and green. The map is trained with the VAE and used only in training.
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

    /// <summary>1 / std of posterior means over <paramref name="samples"/> training images (as SD chose 0.18215).</summary>
    public static double ScalingFactor(AutoencoderKL vae, long trainSeed, int samples = 512)
    {
        using var mode = inference_mode();
        var data = new WorldBatches(64, trainSeed, offset: 50_000_000);
        var means = new List<Tensor>();
        try
        {
            for (int s = 0; s < Math.Max(1, samples / 64); s++)
            {
                using var x = WorldBatches.Images(data.Items(s));
                using var posterior = vae.Encode(x);
                means.Add(posterior.Mean.clone());
            }
            using var all = cat(means.ToArray(), 0);
            return 1.0 / all.std().item<float>();
        }
        finally
        {
            foreach (var m in means) m.Dispose();
        }
    }
}
