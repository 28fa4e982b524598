using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>
/// The contract every sampler follows (diffusers' scheduler API): <see cref="SetTimesteps"/>, then for each timestep
/// <see cref="ScaleModelInput"/> → model → <see cref="Step"/>. Latent arithmetic is done in float32 whatever the model's
/// dtype; coefficients are host doubles, so a step reads nothing back from the device.
/// </summary>
public interface IScheduler : IDisposable
{
    /// <summary>The config as given (nulls mean this scheduler's defaults).</summary>
    SchedulerConfig Config { get; }
    /// <summary>A display name, e.g. "DPM++ 2M Karras".</summary>
    string DisplayName { get; }
    /// <summary>diffusers class name, e.g. DPMSolverMultistepScheduler.</summary>
    string ClassName { get; }
    NoiseSchedule Schedule { get; }

    void SetTimesteps(int numInferenceSteps);
    /// <summary>The timesteps of the model calls, in order (PNDM repeats one).</summary>
    IReadOnlyList<double> Timesteps { get; }
    /// <summary>Whether diffusers keeps these timesteps as int64 (else float32).</summary>
    bool IntegerTimesteps { get; }
    /// <summary>Sampling sigmas including the final one, for sigma-based samplers; empty otherwise.</summary>
    IReadOnlyList<float> Sigmas { get; }
    double InitNoiseSigma { get; }

    Tensor ScaleModelInput(Tensor sample, double timestep);
    /// <summary>One sampler step; returns the previous sample in float32. <paramref name="generator"/> feeds stochastic samplers.</summary>
    Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null);
    /// <summary>Forward diffusion q(x_t | x_0) at the given training timesteps [B] (used by training and img2img).</summary>
    Tensor AddNoise(Tensor originalSamples, Tensor noise, Tensor timesteps);
    /// <summary>Per-image generators (diffusers' generator list) for stochastic steps, or null for the one generator.</summary>
    IReadOnlyList<Generator>? RowGenerators { get; set; }
}
