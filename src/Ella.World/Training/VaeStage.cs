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
