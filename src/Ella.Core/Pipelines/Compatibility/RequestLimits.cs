using Ella.Configs;
using Ella.Diagnostics;
using Ella.Text;
using static TorchSharp.torch;

namespace Ella.Pipelines.Compatibility;

/// <summary>
/// Bounds of a request that the loaded models set, checked before anything runs: steps within the training schedule,
/// a finite guidance scale, token lengths that T5 can afford, and a memory estimate that must fit in the memory
/// available now (the weights are already loaded, so only the working set is estimated).
/// </summary>
public static class RequestLimits
{
    /// <summary>Longest T5 input accepted (fixed --max-length and flexible --max-prompt-tokens).</summary>
    public const int MaxTokens = 4096;

    public static void Check(GenerationRequest r, StableDiffusionModel sd, ScalarType dtype)
    {
        int trainSteps = sd.SchedulerConfig.NumTrainTimesteps ?? 1000;
        if (r.Steps > trainSteps) throw new EllaException($"--steps {r.Steps}: at most {trainSteps} (the scheduler's num_train_timesteps)");
        if (!double.IsFinite(r.GuidanceScale)) throw new EllaException($"--guidance must be a finite number, got {r.GuidanceScale}");
        if (r.TokenLength == TokenLength.Fixed && r.MaxLength > MaxTokens) throw new EllaException($"--max-length {r.MaxLength}: at most {MaxTokens}");
        if (r.MaxPromptTokens < 2 || r.MaxPromptTokens > MaxTokens) throw new EllaException($"--max-prompt-tokens {r.MaxPromptTokens}: between 2 and {MaxTokens}");
        int prompts = Math.Max(1, r.PromptEmbeds is { } pe ? (int)pe.shape[0] : r.Prompts.Count);
        var estimate = MemoryEstimate.Of(sd.Unet.Config, sd.Vae.Config, dtype, (long)prompts * r.BatchSize, r.Width, r.Height, r.GuidanceScale > 1, r.VaeTiling);
        double available = ProcessMemory.AvailableMb() * (1 << 20);
        string? refusal = estimate.Refusal(available, sd.Unet.Config, sd.Vae.Config, dtype, (long)prompts * r.BatchSize, r.Width, r.Height, r.GuidanceScale > 1, r.VaeTiling);
        if (refusal != null) throw new EllaException(refusal);
    }
}

/// <summary>
/// Working memory of one generation in bytes, from the model configs: the UNet's activations (skip connections of every
/// level plus the working set of the widest level, for every CFG row), the VAE decoder's activations at full resolution
/// (per 512-px tile with --vae-tiling) and the output images. Attention is assumed memory-efficient (no L² matrix), as
/// libtorch's scaled_dot_product_attention is on these shapes. Deliberately rough: it separates "fits" from "cannot
/// possibly fit", it is not a prediction.
/// </summary>
public sealed record MemoryEstimate(double UnetBytes, double VaeBytes, double ImageBytes)
{
    public double Total => Math.Max(UnetBytes, VaeBytes) + ImageBytes;

    public static MemoryEstimate Of(UNet2DConditionConfig unet, AutoencoderKLConfig vae, ScalarType dtype, long images, int width, int height, bool cfg, bool tiled)
    {
        double bytes = dtype is ScalarType.Float32 ? 4 : dtype is ScalarType.Float64 ? 8 : 2;
        int f = vae.DownscaleFactor;
        double latentPixels = (double)(width / f) * (height / f);
        double rows = images * (cfg ? 2 : 1);
        double perPixel = 12.0 * unet.BlockOutChannels[0];
        for (int l = 0; l < unet.BlockOutChannels.Length; l++) perPixel += (unet.LayersPerBlock + 1.0) * unet.BlockOutChannels[l] / Math.Pow(4, l);
        double unetBytes = rows * latentPixels * perPixel * bytes;
        // The VAE decodes in float32 when it upcasts; its widest working set is at full resolution with the first channels.
        double vaeElem = vae.ForceUpcast ? 4 : bytes;
        double decodedPixels = tiled ? Math.Min((double)width * height, 512.0 * 512) : (double)width * height;
        double vaeBytes = (tiled ? 1 : images) * decodedPixels * 8.0 * vae.BlockOutChannels[0] * vaeElem;
        double imageBytes = images * 3.0 * width * height * (4 + 4 + 1);
        return new MemoryEstimate(unetBytes, vaeBytes, imageBytes);
    }

    /// <summary>Null when the request fits in <paramref name="available"/> bytes (0 = unknown), else the refusal line.</summary>
    public string? Refusal(double available, UNet2DConditionConfig unet, AutoencoderKLConfig vae, ScalarType dtype, long images, int width, int height, bool cfg, bool tiled)
    {
        if (available <= 0 || Total <= available) return null;
        string advice = "lower --width/--height/--batch";
        if (!tiled)
        {
            var withTiling = Of(unet, vae, dtype, images, width, height, cfg, tiled: true);
            if (withTiling.Total <= available) advice = $"add --vae-tiling (about {Gb(withTiling.Total)}), or {advice}";
        }
        return $"{width}×{height} × {images} image(s) needs about {Gb(Total)} of working memory (UNet {Gb(UnetBytes)}, VAE decode {Gb(VaeBytes)}, images {Gb(ImageBytes)}) " +
               $"but {Gb(available)} is available; {advice}";
    }

    static string Gb(double b) => b >= 1e12 ? $"{b / (1L << 40):F1} TB" : b >= 1 << 30 ? $"{b / (1 << 30):F1} GB" : $"{b / (1 << 20):F0} MB";
}
