using Ella.Configs;
using Ella.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Training;

/// <summary>What the UNet is trained to predict, as the base model's scheduler config says.</summary>
public enum PredictionType { Epsilon, VPrediction }

/// <summary>
/// The denoising objective of one training step, as diffusers' DDPMScheduler and train_text_to_image.py compute it:
/// DDPM <c>add_noise</c>, the target (epsilon or v), and the loss (MSE over all elements, or min-SNR weighted).
/// All arithmetic is float32.
/// </summary>
public sealed class DiffusionObjective
{
    readonly float[] _alphasCumprod;

    public PredictionType Prediction { get; }
    public double? SnrGamma { get; }
    public int NumTrainTimesteps => _alphasCumprod.Length;

    public DiffusionObjective(NoiseSchedule schedule, PredictionType prediction, double? snrGamma)
    {
        if (snrGamma is { } g && !(g > 0)) throw new EllaException($"--snr-gamma must be positive, got {g}");
        _alphasCumprod = schedule.AlphasCumprod;
        Prediction = prediction;
        SnrGamma = snrGamma;
    }

    /// <summary>The objective for a base model's scheduler config (prediction_type defaults to epsilon).</summary>
    public static DiffusionObjective FromConfig(SchedulerConfig config, double? snrGamma) =>
        new(new NoiseSchedule(config), ParsePrediction(config.PredictionType ?? "epsilon", "scheduler config prediction_type"), snrGamma);

    public static PredictionType ParsePrediction(string name, string source) => name switch
    {
        "epsilon" => PredictionType.Epsilon,
        "v_prediction" => PredictionType.VPrediction,
        _ => throw new EllaException($"{source}: prediction type '{name}' is not supported for training (epsilon, v_prediction)"),
    };

    /// <summary>ᾱ at the given integer timesteps, [B] float32 on <paramref name="device"/>.</summary>
    Tensor Acp(Tensor timesteps, Device device)
    {
        using var table = tensor(_alphasCumprod, device: device);
        return table.index_select(0, timesteps.to(ScalarType.Int64, device));
    }

    static Tensor Rows(Tensor perRow, long dims) => perRow.view([perRow.shape[0], .. Enumerable.Repeat(1L, (int)dims - 1)]);

    /// <summary>noisy = √ᾱ·x0 + √(1−ᾱ)·noise, per row.</summary>
    public Tensor AddNoise(Tensor x0, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var acp = Acp(timesteps, x0.device);
        var a = Rows(acp.pow(0.5), x0.dim());
        var s = Rows((1 - acp).pow(0.5), x0.dim());
        return (a * x0 + s * noise).MoveToOuterDisposeScope();
    }

    /// <summary>noise (epsilon), or v = √ᾱ·noise − √(1−ᾱ)·x0 (v_prediction).</summary>
    public Tensor Target(Tensor x0, Tensor noise, Tensor timesteps)
    {
        if (Prediction == PredictionType.Epsilon) return noise.alias();
        using var scope = NewDisposeScope();
        var acp = Acp(timesteps, x0.device);
        var a = Rows(acp.pow(0.5), x0.dim());
        var s = Rows((1 - acp).pow(0.5), x0.dim());
        return (a * noise - s * x0).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// MSE averaged over all elements; with snr_gamma, per-row MSE (mean over C,H,W) times min(snr, γ)/snr (epsilon) or
    /// min(snr, γ)/(snr + 1) (v_prediction), averaged over rows. snr = ᾱ/(1−ᾱ). Returns a 0-dim float32 tensor.
    /// </summary>
    public Tensor Loss(Tensor prediction, Tensor target, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var pred = prediction.to_type(ScalarType.Float32);
        var tgt = target.to_type(ScalarType.Float32);
        if (SnrGamma is not { } gamma)
            return nn.functional.mse_loss(pred, tgt).MoveToOuterDisposeScope();
        var acp = Acp(timesteps, pred.device);
        var alpha = acp.pow(0.5);
        var sigma = (1 - acp).pow(0.5);
        var snr = (alpha / sigma).pow(2);
        var clamped = snr.clamp_max(gamma);
        var weights = Prediction == PredictionType.Epsilon ? clamped / snr : clamped / (snr + 1);
        var perRow = nn.functional.mse_loss(pred, tgt, nn.Reduction.None).mean(Enumerable.Range(1, (int)pred.dim() - 1).Select(i => (long)i).ToArray());
        return (perRow * weights).mean().MoveToOuterDisposeScope();
    }
}
