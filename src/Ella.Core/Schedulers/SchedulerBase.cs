using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>Shared state and helpers of the schedulers: config resolution, timestep spacing, step index.</summary>
public abstract class SchedulerBase : IScheduler
{
    protected SchedulerBase(SchedulerConfig config, string defaultSpacing)
    {
        Config = config;
        Schedule = new NoiseSchedule(config);
        Spacing = config.TimestepSpacing ?? defaultSpacing;
        if (Spacing is not ("linspace" or "leading" or "trailing"))
            throw new EllaException($"scheduler config: timestep_spacing '{Spacing}' is not supported (linspace, leading, trailing)");
        PredictionType = config.PredictionType ?? "epsilon";
        if (PredictionType is not ("epsilon" or "v_prediction" or "sample"))
            throw new EllaException($"scheduler config: prediction_type '{PredictionType}' is not supported (epsilon, v_prediction, sample)");
        StepsOffset = config.StepsOffset ?? 0;
    }

    public SchedulerConfig Config { get; }
    public NoiseSchedule Schedule { get; }
    public abstract string DisplayName { get; }
    public abstract string ClassName { get; }
    protected string Spacing { get; }
    protected string PredictionType { get; }
    protected int StepsOffset { get; }
    protected int NumTrain => Schedule.NumTrainTimesteps;
    protected int NumInferenceSteps { get; set; }

    protected double[] TimestepValues = [];
    protected float[] SigmaValues = [];
    public IReadOnlyList<double> Timesteps => TimestepValues;
    public IReadOnlyList<float> Sigmas => SigmaValues;
    public virtual bool IntegerTimesteps => true;
    public virtual double InitNoiseSigma => 1.0;

    /// <summary>Per-image generators (diffusers' generator list): stochastic steps draw row i from generator i.</summary>
    public IReadOnlyList<Generator>? RowGenerators { get; set; }

    /// <summary>Index of the next step; set from the first timestep seen, then counted.</summary>
    protected int? StepIndex;

    public abstract void SetTimesteps(int numInferenceSteps);

    /// <summary>Releases the tensors a multistep sampler keeps between steps.</summary>
    public virtual void Dispose() { }
    public virtual Tensor ScaleModelInput(Tensor sample, double timestep) => sample.alias();
    public abstract Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null);

    protected void CheckSteps(int n)
    {
        if (n < 1) throw new EllaException($"the number of steps must be at least 1, got {n}");
        if (n > NumTrain) throw new EllaException($"{n} steps is more than the {NumTrain} training timesteps");
        NumInferenceSteps = n;
        StepIndex = null;
    }

    protected void RequireTimesteps()
    {
        if (NumInferenceSteps == 0) throw new InvalidOperationException($"{ClassName}: call SetTimesteps before Step");
    }

    /// <summary>diffusers' index_for_timestep: the second match when a timestep repeats, the last index when absent.</summary>
    protected int IndexForTimestep(double timestep)
    {
        var matches = Enumerable.Range(0, TimestepValues.Length).Where(i => TimestepValues[i] == timestep).Take(2).ToList();
        return matches.Count switch { 0 => TimestepValues.Length - 1, 1 => matches[0], _ => matches[1] };
    }

    protected int CurrentStepIndex(double timestep) => StepIndex ??= IndexForTimestep(timestep);

    /// <summary>numpy.linspace(start, stop, num) as numpy computes it (i·step + start, last value exactly stop).</summary>
    protected static double[] Linspace(double start, double stop, int num)
    {
        var y = new double[num];
        if (num == 1) { y[0] = start; return y; }
        double step = (stop - start) / (num - 1);
        for (int i = 0; i < num; i++) y[i] = i * step + start;
        y[^1] = stop;
        return y;
    }

    /// <summary>
    /// Descending timesteps for the discrete schedulers (DDIM, PNDM's base grid, Euler, LMS): linspace over
    /// [0, T−1] (rounded when <paramref name="round"/>), leading (multiples of T // N plus steps_offset), or trailing.
    /// </summary>
    protected double[] SpacedTimesteps(int n, bool round)
    {
        double[] ts;
        switch (Spacing)
        {
            case "linspace":
                ts = Linspace(0, NumTrain - 1, n);
                if (round) ts = ts.Select(v => Math.Round(v)).ToArray();
                break;
            case "leading":
                int ratio = NumTrain / n;
                ts = Enumerable.Range(0, n).Select(i => (double)(i * ratio + StepsOffset)).ToArray();
                break;
            default: // trailing
                double r = (double)NumTrain / n;
                ts = Arange(NumTrain, 0, -r).Select(v => Math.Round(v) - 1).ToArray();
                Array.Reverse(ts);
                break;
        }
        Array.Reverse(ts);
        return ts;
    }

    /// <summary>numpy.arange(start, stop, step) for a negative step.</summary>
    protected static IEnumerable<double> Arange(double start, double stop, double step)
    {
        long count = (long)Math.Ceiling((stop - start) / step);
        for (long i = 0; i < count; i++) yield return start + i * step;
    }

    /// <summary>x0 prediction for sigma-parameterised samplers (Euler, LMS).</summary>
    protected Tensor PredictOriginalFromSigma(Tensor modelOutput, Tensor sample, double sigma) => PredictionType switch
    {
        "epsilon" => sample - sigma * modelOutput,
        "v_prediction" => modelOutput * (-sigma / Math.Sqrt(sigma * sigma + 1)) + sample / (sigma * sigma + 1),
        _ => modelOutput.alias(),
    };

    /// <summary>
    /// The noise a stochastic step adds, drawn like diffusers' randn_tensor: on the generator's device (the CPU), then
    /// moved, so a seed gives the same numbers on every device.
    /// </summary>
    protected Tensor DrawNoise(Tensor like, Generator? generator, ScalarType dtype)
    {
        var noise = RowGenerators is { } rows && rows.Count == like.shape[0]
            ? cat(rows.Select(g => randn([1, .. like.shape[1..]], dtype: dtype, generator: g)).ToArray(), 0)
            : randn(like.shape, dtype: dtype, generator: generator);
        return like.device_type == DeviceType.CPU ? noise : noise.to(like.device);
    }

    /// <summary>Default forward diffusion with alphas_cumprod (DDPM/DDIM/PNDM): √ᾱ·x + √(1−ᾱ)·ε.</summary>
    public virtual Tensor AddNoise(Tensor originalSamples, Tensor noise, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var acp = tensor(Schedule.AlphasCumprod).to(originalSamples.device);
        var a = acp.index_select(0, timesteps.to_type(ScalarType.Int64).to(originalSamples.device).reshape(-1));
        var shape = new long[originalSamples.dim()];
        Array.Fill(shape, 1L);
        shape[0] = -1;
        a = a.reshape(shape);
        var result = a.sqrt() * originalSamples + (1.0f - a).sqrt() * noise;
        return result.to_type(originalSamples.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Forward diffusion for sigma samplers: x + σ·ε at each timestep's sampling sigma.</summary>
    protected Tensor AddNoiseWithSigmas(Tensor originalSamples, Tensor noise, Tensor timesteps, bool scaleLikeDpm)
    {
        using var scope = NewDisposeScope();
        double[] ts = timesteps.to_type(ScalarType.Float64).cpu().data<double>().ToArray();
        var s = ts.Select(t => (double)SigmaValues[IndexForTimestep(t)]).ToArray();
        var shape = new long[originalSamples.dim()];
        Array.Fill(shape, 1L);
        shape[0] = -1;
        var sigma = tensor(s, dtype: ScalarType.Float32).to(originalSamples.device).reshape(shape);
        Tensor result;
        if (scaleLikeDpm)
        {
            var alpha = 1.0f / (sigma.pow(2) + 1).sqrt();
            result = alpha * originalSamples + sigma * alpha * noise;
        }
        else result = originalSamples + noise * sigma;
        return result.MoveToOuterDisposeScope();
    }
}
