using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>
/// Samplers in the σ parameterisation (Euler, Euler ancestral, LMS): float timesteps, sigmas interpolated from the
/// training schedule, inputs scaled by 1/√(σ²+1), and init_noise_sigma = σ_max (√(σ_max²+1) for 'leading').
/// </summary>
public abstract class SigmaSchedulerBase : SchedulerBase
{
    protected readonly bool Karras;

    protected SigmaSchedulerBase(SchedulerConfig config) : base(config, "linspace")
    {
        Karras = config.UseKarrasSigmas ?? false;
        if ((config.InterpolationType ?? "linear") != "linear")
            throw new EllaException($"scheduler config: interpolation_type '{config.InterpolationType}' is not supported (linear)");
        if ((config.TimestepType ?? "discrete") != "discrete")
            throw new EllaException($"scheduler config: timestep_type '{config.TimestepType}' is not supported (discrete)");
    }

    public override bool IntegerTimesteps => false;

    public override double InitNoiseSigma
    {
        get
        {
            float max = SigmaValues.Length > 0 ? SigmaValues.Max() : Schedule.Sigmas[^1];
            return Spacing is "linspace" or "trailing" ? max : MathF.Sqrt(max * max + 1);
        }
    }

    public override void SetTimesteps(int numInferenceSteps)
    {
        CheckSteps(numInferenceSteps);
        // diffusers keeps these timesteps in float32 (linspace is not rounded here).
        double[] ts = SpacedTimesteps(numInferenceSteps, round: false).Select(t => (double)(float)t).ToArray();
        float[] train = Schedule.Sigmas;
        double[] sigmas = ts.Select(t => NoiseSchedule.Interp(t, train)).ToArray();
        if (Karras)
        {
            sigmas = DpmSolverMultistepScheduler.KarrasSigmas(sigmas[0], sigmas[^1], numInferenceSteps, 7.0);
            var logSigmas = train.Select(s => (double)MathF.Log(s)).ToArray();
            ts = sigmas.Select(s => (double)(float)DpmSolverMultistepScheduler.SigmaToT(s, logSigmas)).ToArray();
        }
        SigmaValues = sigmas.Select(s => (float)s).Append(0f).ToArray();
        TimestepValues = ts;
        OnSetTimesteps();
    }

    protected virtual void OnSetTimesteps() { }

    public override Tensor ScaleModelInput(Tensor sample, double timestep)
    {
        double sigma = SigmaValues[CurrentStepIndex(timestep)];
        return sample / Math.Sqrt(sigma * sigma + 1);
    }

    public override Tensor AddNoise(Tensor originalSamples, Tensor noise, Tensor timesteps) =>
        AddNoiseWithSigmas(originalSamples, noise, timesteps, scaleLikeDpm: false);
}
