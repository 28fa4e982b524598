using Ella.Modules.UNet;
using Ella.Modules.Vae;
using Ella.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>Progress of a run, reported after each denoising step.</summary>
public readonly record struct StepProgress(int Step, int TotalSteps, double Timestep, TimeSpan Elapsed);

/// <summary>Per-step tensors, for tests and debugging (<see cref="DenoisingLoop.Run"/> fills it when given).</summary>
public sealed class DenoisingTrace
{
    public List<Tensor> ModelInputs { get; } = new();
    public List<Tensor> Conditions { get; } = new();
    public List<Tensor> NoisePredictions { get; } = new();
    public List<Tensor> Latents { get; } = new();
}

/// <summary>
/// Steps 3–6 of diffusers' StableDiffusionPipeline with ELLA's proxy UNet: timesteps, initial latents from a CPU
/// generator, the loop (condition at t → UNet → classifier-free guidance → scheduler step), VAE decode. One dispose
/// scope per step; latents stay float32 and only the UNet input is cast to the model dtype.
/// </summary>
public static class DenoisingLoop
{
    /// <summary>Initial latents exactly as diffusers' randn_tensor draws them: one randn of the whole [B,C,h,w] shape
    /// from the CPU generator, then moved to the device, times init_noise_sigma.</summary>
    public static Tensor InitialLatents(long batch, long channels, long height, long width, Generator generator, double initNoiseSigma, Device device)
    {
        using var scope = NewDisposeScope();
        var noise = randn([batch, channels, height, width], dtype: ScalarType.Float32, generator: generator);
        return (noise.to(device) * initNoiseSigma).MoveToOuterDisposeScope();
    }

    /// <param name="latents">initial latents [B, C, h, w] (already × init_noise_sigma); float32</param>
    /// <param name="cond">condition rows for the prompts (B rows)</param>
    /// <param name="uncond">condition rows for the negative prompts, or null when guidance ≤ 1</param>
    /// <returns>final latents [B, C, h, w] (float32)</returns>
    public static Tensor Run(UNet2DConditionModel unet, IScheduler scheduler, Tensor latents, IConditioner cond, IConditioner? uncond,
        double guidanceScale, Generator generator, ScalarType dtype, IProgress<StepProgress>? progress = null,
        CancellationToken cancellation = default, DenoisingTrace? trace = null, DenoisingParts? parts = null)
    {
        bool cfg = guidanceScale > 1.0 && uncond != null;
        var timesteps = scheduler.Timesteps;
        parts ??= DenoisingParts.None;
        var current = latents.alias().DetachFromDisposeScope();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = parts.FirstStep; i < timesteps.Count; i++)
        {
            cancellation.ThrowIfCancellationRequested();
            double tValue = timesteps[i];
            using (var scope = NewDisposeScope())
            {
                var t = new StepTime(tValue, scheduler.IntegerTimesteps ? tensor((long)tValue) : tensor((float)tValue));
                var x = cfg ? cat([current, current], 0) : current;
                x = scheduler.ScaleModelInput(x, tValue);
                var (condition, tokenMask) = cfg ? TokenPadding.Join((uncond!.At(t), uncond.TokenMask), (cond.At(t), cond.TokenMask))
                    : (cond.At(t), cond.TokenMask);
                var step = new StepContext(i, t, i + 1 < timesteps.Count ? timesteps[i + 1] : null, cfg, tokenMask);
                var noise = parts.IsEmpty
                    ? unet.Forward(x.to_type(dtype), t.Tensor.to(x.device), condition.to_type(dtype), null, tokenMask).to_type(ScalarType.Float32)
                    : WithParts(unet, parts, step, x, condition.to_type(dtype), dtype);
                if (cfg)
                {
                    var halves = noise.chunk(2, 0);
                    noise = halves[0] + guidanceScale * (halves[1] - halves[0]);
                }
                var next = scheduler.Step(noise, tValue, current, generator);
                foreach (var hook in parts.Hooks) next = hook.AfterStep(step, next, scheduler);
                if (trace != null)
                {
                    trace.ModelInputs.Add(x.DetachFromDisposeScope());
                    trace.Conditions.Add(condition.DetachFromDisposeScope());
                    trace.NoisePredictions.Add(noise.DetachFromDisposeScope());
                    trace.Latents.Add(next.alias().DetachFromDisposeScope());
                }
                current.Dispose();
                current = next.DetachFromDisposeScope();
            }
            progress?.Report(new StepProgress(i + 1 - parts.FirstStep, timesteps.Count - parts.FirstStep, tValue, clock.Elapsed));
        }
        return current;
    }

    /// <summary>The UNet call with the tools' extra inputs: residuals (summed over ControlNets) from the 4-channel
    /// input, then the input channels (9-channel inpainting).</summary>
    /// <param name="step">with the condition's padding mask (<see cref="StepContext.TokenMask"/>), which the UNet and every ControlNet apply</param>
    static Tensor WithParts(UNet2DConditionModel unet, DenoisingParts parts, StepContext step, Tensor x, Tensor condition, ScalarType dtype)
    {
        UNetResiduals? residuals = null;
        foreach (var u in parts.UNet)
            if (u.Residuals(step, x, condition, dtype) is { } r) residuals = residuals == null ? r : UNetResiduals.Sum(residuals, r);
        var input = x;
        foreach (var u in parts.UNet) input = u.Input(input);
        return unet.Forward(input.to_type(dtype), step.Time.Tensor.to(x.device), condition, residuals, step.TokenMask).to_type(ScalarType.Float32);
    }

    /// <summary>VAE decode of latents / scaling_factor, then image = clamp(x/2 + 0.5, 0, 1) as float32 [B, 3, H, W].</summary>
    public static Tensor Decode(AutoencoderKL vae, Tensor latents, ScalarType dtype, bool tiled = false)
    {
        using var scope = NewDisposeScope();
        var z = (latents / vae.Config.ScalingFactor).to_type(dtype);
        var decoded = tiled ? VaeTiling.Decode(vae, z) : vae.Decode(z);
        return (decoded.to_type(ScalarType.Float32) / 2 + 0.5).clamp(0.0, 1.0).MoveToOuterDisposeScope();
    }
}
