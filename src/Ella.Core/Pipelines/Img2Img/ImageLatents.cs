using Ella.Modules.Vae;
using Ella.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Pipelines.Img2Img;

/// <summary>
/// img2img's start (diffusers' StableDiffusionImg2ImgPipeline): the schedule's last int(steps·strength) timesteps; the
/// init image encoded with latent_dist.sample(generator) × scaling_factor (one image serves every row), then noised to
/// the first of those timesteps with randn(generator), in that order.
/// </summary>
public static class ImageLatents
{
    /// <summary>diffusers' get_timesteps: t_start = steps − min(int(steps·strength), steps); an error when no step is left.</summary>
    public static int FirstStep(int steps, double strength)
    {
        if (double.IsNaN(strength) || strength <= 0 || strength > 1) throw new EllaException($"strength must be in (0, 1], got {strength}");
        int init = Math.Min((int)(steps * strength), steps);
        if (init < 1) throw new EllaException($"strength {strength} with {steps} steps leaves no denoising step (int(steps × strength) = 0); raise --strength or --steps");
        return steps - init;
    }

    /// <summary>Latents of the image for <paramref name="rows"/> rows: sample × scaling_factor (float32). One generator:
    /// one sample of the single image, repeated; per-image generators: row i samples with generator i.</summary>
    /// <param name="image">[1, 3, H, W] in [−1, 1]</param>
    public static Tensor Encode(AutoencoderKL vae, Tensor image, int rows, SeedGenerators seeds, ScalarType dtype, Device device)
    {
        using var scope = NewDisposeScope();
        using var dist = vae.Encode(image.to(device).to_type(dtype));
        var mean = dist.Mean.to_type(ScalarType.Float32);
        var std = dist.Std().to_type(ScalarType.Float32);
        Tensor sample;
        if (seeds.Rows == null) sample = (mean + std * seeds.Randn(mean.shape).to(device)).expand(rows, -1, -1, -1);
        else sample = mean + std * seeds.Randn([rows, .. mean.shape[1..]]).to(device);
        return (sample * vae.Config.ScalingFactor).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>scheduler.add_noise(latents, noise, [t] × rows).</summary>
    public static Tensor AddNoise(IScheduler scheduler, Tensor latents, Tensor noise, double timestep)
    {
        using var t = full([latents.shape[0]], timestep, dtype: ScalarType.Float64);
        return scheduler.AddNoise(latents, noise, t);
    }

    /// <summary>The noised start of an img2img run and the index of its first timestep.</summary>
    public static (Tensor Latents, int FirstStep) Start(AutoencoderKL vae, IScheduler scheduler, Tensor image, int rows, int steps, double strength,
        SeedGenerators seeds, ScalarType dtype, Device device)
    {
        int first = FirstStep(steps, strength);
        using var scope = NewDisposeScope();
        var init = Encode(vae, image, rows, seeds, dtype, device);
        var noise = seeds.Randn(init.shape).to(device);
        var latents = AddNoise(scheduler, init, noise, scheduler.Timesteps[first]);
        return (latents.MoveToOuterDisposeScope(), first);
    }
}
