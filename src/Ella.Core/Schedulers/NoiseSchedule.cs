using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>
/// The training noise schedule shared by all schedulers: betas, alphas_cumprod and sigmas = √((1−ᾱ)/ᾱ), computed
/// in float32 exactly as diffusers does (the float32 values are then used as doubles, as numpy does).
/// </summary>
public sealed class NoiseSchedule
{
    public int NumTrainTimesteps { get; }
    public float[] Betas { get; }
    public float[] AlphasCumprod { get; }
    /// <summary>√((1−ᾱ)/ᾱ) per training timestep, ascending (float32 values).</summary>
    public float[] Sigmas { get; }

    public NoiseSchedule(SchedulerConfig config)
    {
        NumTrainTimesteps = config.NumTrainTimesteps ?? 1000;
        double start = config.BetaStart ?? 0.0001, end = config.BetaEnd ?? 0.02;
        string schedule = config.BetaSchedule ?? "linear";
        using var scope = NewDisposeScope();
        Tensor betas;
        if (config.TrainedBetas is { Length: > 0 } trained)
            betas = tensor(trained.Select(b => (float)b).ToArray());
        else
            betas = schedule switch
            {
                "linear" => linspace(start, end, NumTrainTimesteps, dtype: ScalarType.Float32),
                "scaled_linear" => linspace(Math.Sqrt(start), Math.Sqrt(end), NumTrainTimesteps, dtype: ScalarType.Float32).pow(2),
                "squaredcos_cap_v2" => tensor(CosineBetas(NumTrainTimesteps)),
                _ => throw new EllaException($"scheduler config: beta_schedule '{schedule}' is not supported (linear, scaled_linear, squaredcos_cap_v2)"),
            };
        if (config.RescaleBetasZeroSnr == true) betas = RescaleZeroTerminalSnr(betas);
        var alphasCumprod = (1.0f - betas).cumprod(0);
        if (config.RescaleBetasZeroSnr == true) alphasCumprod[-1] = tensor(MathF.Pow(2, -24));
        var sigmas = ((1.0f - alphasCumprod) / alphasCumprod).pow(0.5);
        Betas = betas.data<float>().ToArray();
        AlphasCumprod = alphasCumprod.data<float>().ToArray();
        Sigmas = sigmas.data<float>().ToArray();
    }

    static float[] CosineBetas(int n, double maxBeta = 0.999)
    {
        static double AlphaBar(double t) => Math.Pow(Math.Cos((t + 0.008) / 1.008 * Math.PI / 2), 2);
        var betas = new float[n];
        for (int i = 0; i < n; i++)
            betas[i] = (float)Math.Min(1 - AlphaBar((i + 1.0) / n) / AlphaBar((double)i / n), maxBeta);
        return betas;
    }

    static Tensor RescaleZeroTerminalSnr(Tensor betas)
    {
        var alphasBarSqrt = (1.0f - betas).cumprod(0).sqrt();
        var first = alphasBarSqrt[0].clone();
        var last = alphasBarSqrt[-1].clone();
        alphasBarSqrt = (alphasBarSqrt - last) * (first / (first - last));
        var alphasBar = alphasBarSqrt.pow(2);
        var alphas = cat([alphasBar[..1], alphasBar[1..] / alphasBar[..^1]]);
        return 1.0f - alphas;
    }

    /// <summary>numpy.interp over the integer grid 0..n−1 (x is clamped to the ends, as numpy does).</summary>
    public static double Interp(double x, float[] values)
    {
        if (x <= 0) return values[0];
        if (x >= values.Length - 1) return values[^1];
        int j = (int)Math.Floor(x);
        double slope = ((double)values[j + 1] - values[j]);
        return slope * (x - j) + values[j];
    }
}
