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
    /// With <paramref name="weights"/> ([B, 1, h, w] or any shape that broadcasts), each mean over elements becomes a
    /// weighted mean, Σ w·(pred − target)² / Σ w (see <see cref="WeightedMse"/>).
    /// </summary>
    public Tensor Loss(Tensor prediction, Tensor target, Tensor timesteps, Tensor? weights = null)
    {
        using var scope = NewDisposeScope();
        var pred = prediction.to_type(ScalarType.Float32);
        var tgt = target.to_type(ScalarType.Float32);
        if (weights is not null)
        {
            if (SnrGamma is null) return WeightedMse(pred, tgt, weights).MoveToOuterDisposeScope();
            return (WeightedMse(pred, tgt, weights, perRow: true) * SnrWeights(timesteps, pred.device)).mean().MoveToOuterDisposeScope();
        }
        if (SnrGamma is null)
            return nn.functional.mse_loss(pred, tgt).MoveToOuterDisposeScope();
        var perRow = nn.functional.mse_loss(pred, tgt, nn.Reduction.None).mean(Enumerable.Range(1, (int)pred.dim() - 1).Select(i => (long)i).ToArray());
        return (perRow * SnrWeights(timesteps, pred.device)).mean().MoveToOuterDisposeScope();
    }

    /// <summary>min(snr, γ)/snr (epsilon) or min(snr, γ)/(snr + 1) (v_prediction) per row, [B] float32.</summary>
    Tensor SnrWeights(Tensor timesteps, Device device)
    {
        using var scope = NewDisposeScope();
        var acp = Acp(timesteps, device);
        var snr = (acp.pow(0.5) / (1 - acp).pow(0.5)).pow(2); // as diffusers' compute_snr: (α/σ)²
        var clamped = snr.clamp_max(SnrGamma!.Value);
        return (Prediction == PredictionType.Epsilon ? clamped / snr : clamped / (snr + 1)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Σ w·(a − b)² / Σ w over all elements, float32, with <paramref name="weights"/> broadcast to the shape of a (both
    /// sums over the broadcast shape); per row ([B]) with <paramref name="perRow"/>. All-equal weights give the plain MSE.
    /// </summary>
    public static Tensor WeightedMse(Tensor a, Tensor b, Tensor weights, bool perRow = false)
    {
        using var scope = NewDisposeScope();
        var sq = (a.to_type(ScalarType.Float32) - b.to_type(ScalarType.Float32)).pow(2);
        var w = weights.to(ScalarType.Float32, sq.device).expand(sq.shape);
        long[] dims = perRow ? Enumerable.Range(1, (int)sq.dim() - 1).Select(i => (long)i).ToArray() : Enumerable.Range(0, (int)sq.dim()).Select(i => (long)i).ToArray();
        return ((sq * w).sum(dims) / w.sum(dims)).MoveToOuterDisposeScope();
    }
}
