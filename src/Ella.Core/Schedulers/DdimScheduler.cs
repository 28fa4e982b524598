using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>DDIM (diffusers' DDIMScheduler), deterministic for eta = 0 (what the SD pipeline passes by default).</summary>
public sealed class DdimScheduler : SchedulerBase
{
    readonly double _finalAlphaCumprod;
    readonly bool _clipSample;
    readonly double _clipRange;

    /// <summary>Stochasticity of the step; 0 = DDIM, 1 = DDPM-like.</summary>
    public double Eta { get; set; }

    public DdimScheduler(SchedulerConfig config) : base(config, "leading")
    {
        _finalAlphaCumprod = config.SetAlphaToOne ?? true ? 1.0 : Schedule.AlphasCumprod[0];
        _clipSample = config.ClipSample ?? true;
        _clipRange = config.ClipSampleRange ?? 1.0;
        if (config.Thresholding == true) throw new EllaException("scheduler config: thresholding is not supported");
    }

    public override string ClassName => "DDIMScheduler";
    public override string DisplayName => "DDIM";

    public override void SetTimesteps(int numInferenceSteps)
    {
        CheckSteps(numInferenceSteps);
        TimestepValues = SpacedTimesteps(numInferenceSteps, round: true).Select(t => (double)(long)t).ToArray();
    }

    double AlphaCumprod(long t) => t >= 0 ? Schedule.AlphasCumprod[t] : _finalAlphaCumprod;

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        long t = (long)timestep;
        long prevT = t - NumTrain / NumInferenceSteps;
        double a = AlphaCumprod(t), aPrev = AlphaCumprod(prevT), b = 1 - a;
        using var scope = NewDisposeScope();
        var x = sample.to_type(ScalarType.Float32);
        var output = modelOutput.to_type(ScalarType.Float32);
        Tensor x0, eps;
        switch (PredictionType)
        {
            case "epsilon": x0 = (x - Math.Sqrt(b) * output) / Math.Sqrt(a); eps = output; break;
            case "sample": x0 = output; eps = (x - Math.Sqrt(a) * x0) / Math.Sqrt(b); break;
            default: x0 = Math.Sqrt(a) * x - Math.Sqrt(b) * output; eps = Math.Sqrt(a) * output + Math.Sqrt(b) * x; break;
        }
        if (_clipSample) x0 = x0.clamp(-_clipRange, _clipRange);
        double variance = (1 - aPrev) / b * (1 - a / aPrev);
        double std = Eta * Math.Sqrt(variance);
        var prev = Math.Sqrt(aPrev) * x0 + Math.Sqrt(1 - aPrev - std * std) * eps;
        if (Eta > 0) prev = prev + std * DrawNoise(modelOutput, generator, ScalarType.Float32);
        return prev.MoveToOuterDisposeScope();
    }
}
