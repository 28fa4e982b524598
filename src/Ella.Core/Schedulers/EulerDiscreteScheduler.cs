using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>
/// Euler (Karras et al. Algorithm 2, s_churn = 0), diffusers' EulerDiscreteScheduler. Like diffusers, every step draws
/// one (unused) noise tensor from the generator, so a seeded run advances the generator exactly as diffusers does.
/// </summary>
public sealed class EulerDiscreteScheduler : SigmaSchedulerBase
{
    public EulerDiscreteScheduler(SchedulerConfig config) : base(config) { }

    public override string ClassName => "EulerDiscreteScheduler";
    public override string DisplayName => Karras ? "Euler Karras" : "Euler";

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        int i = CurrentStepIndex(timestep);
        using var scope = NewDisposeScope();
        var x = sample.to_type(ScalarType.Float32);
        var output = modelOutput.to_type(ScalarType.Float32);
        double sigma = SigmaValues[i];
        DrawNoise(modelOutput, generator, modelOutput.dtype); // s_churn = 0: drawn but unused, as diffusers does
        var x0 = PredictOriginalFromSigma(output, x, sigma);
        var derivative = (x - x0) / sigma;
        double dt = SigmaValues[i + 1] - sigma;
        StepIndex = i + 1;
        return (x + derivative * dt).MoveToOuterDisposeScope();
    }
}

/// <summary>Euler ancestral (diffusers' EulerAncestralDiscreteScheduler): an Euler step to σ_down, then noise σ_up.</summary>
public sealed class EulerAncestralDiscreteScheduler : SigmaSchedulerBase
{
    public EulerAncestralDiscreteScheduler(SchedulerConfig config) : base(config) { }

    public override string ClassName => "EulerAncestralDiscreteScheduler";
    public override string DisplayName => "Euler a";

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        int i = CurrentStepIndex(timestep);
        using var scope = NewDisposeScope();
        var x = sample.to_type(ScalarType.Float32);
        var output = modelOutput.to_type(ScalarType.Float32);
        double sigmaFrom = SigmaValues[i], sigmaTo = SigmaValues[i + 1];
        var x0 = PredictOriginalFromSigma(output, x, sigmaFrom);
        double sigmaUp = Math.Sqrt(sigmaTo * sigmaTo * (sigmaFrom * sigmaFrom - sigmaTo * sigmaTo) / (sigmaFrom * sigmaFrom));
        double sigmaDown = Math.Sqrt(sigmaTo * sigmaTo - sigmaUp * sigmaUp);
        var derivative = (x - x0) / sigmaFrom;
        var prev = x + derivative * (sigmaDown - sigmaFrom);
        var noise = DrawNoise(modelOutput, generator, modelOutput.dtype).to_type(ScalarType.Float32);
        StepIndex = i + 1;
        return (prev + noise * sigmaUp).MoveToOuterDisposeScope();
    }
}
