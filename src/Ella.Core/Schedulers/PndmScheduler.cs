using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>
/// PNDM in its PLMS form (skip_prk_steps = true, as SD1.5 ships it): a linear multistep method whose warm-up calls the
/// model twice at the first timestep, so N steps make N + 1 model calls.
/// </summary>
public sealed class PndmScheduler : SchedulerBase
{
    readonly double _finalAlphaCumprod;
    readonly List<Tensor> _ets = new();
    Tensor? _curSample;
    int _counter;

    public PndmScheduler(SchedulerConfig config) : base(config, "leading")
    {
        if (config.SkipPrkSteps != true)
            throw new EllaException("scheduler config: PNDM with Runge-Kutta warm-up (skip_prk_steps = false) is not supported; set skip_prk_steps to true (the Stable Diffusion setting)");
        _finalAlphaCumprod = config.SetAlphaToOne ?? true ? 1.0 : Schedule.AlphasCumprod[0];
    }

    public override string ClassName => "PNDMScheduler";
    public override string DisplayName => "PLMS";

    public override void SetTimesteps(int numInferenceSteps)
    {
        CheckSteps(numInferenceSteps);
        // Base grid ascending, then [:-1] + [-2] + [-1], reversed: the second-to-last base timestep repeats.
        double[] asc;
        if (Spacing == "linspace")
            asc = Linspace(0, NumTrain - 1, numInferenceSteps).Select(v => Math.Round(v)).ToArray();
        else
            asc = SpacedTimesteps(numInferenceSteps, round: true).Reverse().ToArray();
        // (numpy's timesteps[-2:-1] is empty for one step: then there is no repeat.)
        var plms = asc.Take(asc.Length - 1).Concat(asc.Length >= 2 ? asc.Skip(asc.Length - 2).Take(1) : []).Concat(asc.Skip(asc.Length - 1)).Reverse();
        TimestepValues = plms.Select(t => (double)(long)t).ToArray();
        Reset();
    }

    public override void Dispose() => Reset();

    void Reset()
    {
        foreach (var e in _ets) e.Dispose();
        _ets.Clear();
        _curSample?.Dispose();
        _curSample = null;
        _counter = 0;
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        long t = (long)timestep;
        long prevT = t - NumTrain / NumInferenceSteps;
        var output = modelOutput.to_type(ScalarType.Float32).DetachFromDisposeScope();
        var x = sample.to_type(ScalarType.Float32);
        if (_counter != 1)
        {
            while (_ets.Count > 3) { _ets[0].Dispose(); _ets.RemoveAt(0); }
            _ets.Add(output);
        }
        else
        {
            prevT = t;
            t += NumTrain / NumInferenceSteps;
        }

        using var scope = NewDisposeScope();
        Tensor eps;
        if (_ets.Count == 1 && _counter == 0)
        {
            eps = output.alias();
            _curSample?.Dispose();
            _curSample = x.alias().DetachFromDisposeScope();
        }
        else if (_ets.Count == 1 && _counter == 1)
        {
            eps = (output + _ets[^1]) / 2;
            x = _curSample!;
        }
        else if (_ets.Count == 2) eps = (3 * _ets[^1] - _ets[^2]) / 2;
        else if (_ets.Count == 3) eps = (23 * _ets[^1] - 16 * _ets[^2] + 5 * _ets[^3]) / 12;
        else eps = (1.0 / 24) * (55 * _ets[^1] - 59 * _ets[^2] + 37 * _ets[^3] - 9 * _ets[^4]);

        var prev = PreviousSample(x, t, prevT, eps);
        if (_counter == 1) { _curSample!.Dispose(); _curSample = null; }
        if (_counter == 1) output.Dispose(); // not kept in the history on the repeated call
        _counter++;
        return prev.MoveToOuterDisposeScope();
    }

    Tensor PreviousSample(Tensor sample, long t, long prevT, Tensor modelOutput)
    {
        double a = Schedule.AlphasCumprod[t];
        double aPrev = prevT >= 0 ? Schedule.AlphasCumprod[prevT] : _finalAlphaCumprod;
        double b = 1 - a, bPrev = 1 - aPrev;
        if (PredictionType == "v_prediction") modelOutput = Math.Sqrt(a) * modelOutput + Math.Sqrt(b) * sample;
        else if (PredictionType != "epsilon") throw new EllaException($"PNDM supports epsilon and v_prediction, not '{PredictionType}'");
        double sampleCoeff = Math.Sqrt(aPrev / a);
        double denom = a * Math.Sqrt(bPrev) + Math.Sqrt(a * b * aPrev);
        return sampleCoeff * sample - (aPrev - a) * modelOutput / denom;
    }
}
