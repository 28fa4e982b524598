using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>
/// DPM-Solver++ multistep (diffusers' DPMSolverMultistepScheduler): orders 1 and 2 (midpoint or heun), data
/// prediction ("dpmsolver++"), optional Karras sigmas, lower-order final steps. "DPM++ 2M" is the ELLA authors' default.
/// </summary>
public sealed class DpmSolverMultistepScheduler : SchedulerBase
{
    readonly int _order;
    readonly string _solverType;
    readonly bool _lowerOrderFinal;
    readonly bool _eulerAtFinal;
    readonly bool _karras;
    readonly string _finalSigmasType;
    readonly double _lambdaMinClipped;
    readonly Tensor?[] _modelOutputs;
    int _lowerOrderNums;

    public DpmSolverMultistepScheduler(SchedulerConfig config) : base(config, "linspace")
    {
        _order = config.SolverOrder ?? 2;
        if (_order is < 1 or > 2) throw new EllaException($"scheduler config: solver_order {_order} is not supported (1 or 2)");
        string algorithm = config.AlgorithmType ?? "dpmsolver++";
        if (algorithm is "deis") algorithm = "dpmsolver++";
        if (algorithm != "dpmsolver++")
            throw new EllaException($"scheduler config: algorithm_type '{algorithm}' is not supported (dpmsolver++)");
        _solverType = config.SolverType ?? "midpoint";
        if (_solverType is "logrho" or "bh1" or "bh2") _solverType = "midpoint";
        if (_solverType is not ("midpoint" or "heun")) throw new EllaException($"scheduler config: solver_type '{_solverType}' is not supported");
        _lowerOrderFinal = config.LowerOrderFinal ?? true;
        _eulerAtFinal = config.EulerAtFinal ?? false;
        _karras = config.UseKarrasSigmas ?? false;
        if (config.UseLuLambdas == true) throw new EllaException("scheduler config: use_lu_lambdas is not supported");
        if (config.Thresholding == true) throw new EllaException("scheduler config: thresholding is not supported");
        _finalSigmasType = config.FinalSigmasType ?? "zero";
        if (_finalSigmasType is not ("zero" or "sigma_min")) throw new EllaException($"scheduler config: final_sigmas_type '{_finalSigmasType}' is not supported");
        _lambdaMinClipped = config.LambdaMinClipped ?? double.NegativeInfinity;
        _modelOutputs = new Tensor?[_order];
    }

    public override string ClassName => "DPMSolverMultistepScheduler";
    public override string DisplayName => (_order == 2 ? "DPM++ 2M" : "DPM++ 1M") + (_karras ? " Karras" : "");

    public override void SetTimesteps(int numInferenceSteps)
    {
        CheckSteps(numInferenceSteps);
        int n = numInferenceSteps;
        // lambda_t = log(alpha_t) - log(sigma_t); clip the tail where lambda falls below lambda_min_clipped.
        float[] acp = Schedule.AlphasCumprod;
        int clippedIdx = 0;
        var lambdasAscendingTime = acp.Select(a => (double)(MathF.Log(MathF.Sqrt(a)) - MathF.Log(MathF.Sqrt(1 - a)))).ToArray();
        var flipped = lambdasAscendingTime.Reverse().ToArray();
        while (clippedIdx < flipped.Length && flipped[clippedIdx] < _lambdaMinClipped) clippedIdx++;
        int lastTimestep = NumTrain - clippedIdx;

        double[] ts = Spacing switch
        {
            "linspace" => Linspace(0, lastTimestep - 1, n + 1).Select(v => Math.Round(v)).Reverse().Take(n).ToArray(),
            "leading" => Enumerable.Range(0, n + 1).Select(i => (double)(i * (lastTimestep / (n + 1)))).Reverse().Take(n)
                .Select(v => v + StepsOffset).ToArray(),
            _ => Arange(lastTimestep, 0, -(double)NumTrain / n).Select(v => Math.Round(v) - 1).ToArray(),
        };

        float[] trainSigmas = Schedule.Sigmas;
        double[] sigmas;
        if (_karras)
        {
            sigmas = KarrasSigmas(trainSigmas[^1], trainSigmas[0], n);
            var logSigmas = trainSigmas.Select(s => (double)MathF.Log(s)).ToArray();
            ts = sigmas.Select(s => Math.Round(SigmaToT(s, logSigmas))).ToArray();
        }
        else sigmas = ts.Select(t => NoiseSchedule.Interp(t, trainSigmas)).ToArray();

        double last = _finalSigmasType == "sigma_min" ? Math.Sqrt((1 - (double)acp[0]) / acp[0]) : 0;
        SigmaValues = sigmas.Append(last).Select(s => (float)s).ToArray();
        TimestepValues = ts.Select(t => (double)(long)t).ToArray();
        foreach (var t in _modelOutputs) t?.Dispose();
        Array.Clear(_modelOutputs);
        _lowerOrderNums = 0;
    }

    /// <summary>Karras et al. (2022) rho-7 spacing between sigma_max and sigma_min.</summary>
    internal static double[] KarrasSigmas(double sigmaMax, double sigmaMin, int n, double rho = 7.0)
    {
        double minInv = Math.Pow(sigmaMin, 1 / rho), maxInv = Math.Pow(sigmaMax, 1 / rho);
        return Linspace(0, 1, n).Select(r => Math.Pow(maxInv + r * (minInv - maxInv), rho)).ToArray();
    }

    /// <summary>diffusers' _sigma_to_t: interpolate the (fractional) training timestep of a sigma in log space.</summary>
    internal static double SigmaToT(double sigma, double[] logSigmas)
    {
        double logSigma = Math.Log(Math.Max(sigma, 1e-10));
        int low = 0;
        for (int i = 0; i < logSigmas.Length; i++) if (logSigma - logSigmas[i] >= 0) low = i;
        low = Math.Min(low, logSigmas.Length - 2);
        int high = low + 1;
        double w = (logSigmas[low] - logSigma) / (logSigmas[low] - logSigmas[high]);
        w = Math.Clamp(w, 0, 1);
        return (1 - w) * low + w * high;
    }

    static (double Alpha, double Sigma, double Lambda) AlphaSigma(double sigma)
    {
        double alpha = 1 / Math.Sqrt(sigma * sigma + 1);
        double s = sigma * alpha;
        return (alpha, s, Math.Log(alpha) - Math.Log(s));
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        int i = CurrentStepIndex(timestep);
        int n = TimestepValues.Length;
        bool lowerOrderFinal = i == n - 1 && (_eulerAtFinal || (_lowerOrderFinal && n < 15) || _finalSigmasType == "zero");

        using var scope = NewDisposeScope();
        var x = sample.to_type(ScalarType.Float32);
        var output = modelOutput.to_type(ScalarType.Float32);
        var (alphaS0, sigmaS0, lambdaS0) = AlphaSigma(SigmaValues[i]);
        // Data prediction x0 from the model output.
        var x0 = PredictionType switch
        {
            "epsilon" => (x - sigmaS0 * output) / alphaS0,
            "v_prediction" => alphaS0 * x - sigmaS0 * output,
            _ => output.alias(),
        };
        x0.DetachFromDisposeScope();
        _modelOutputs[0]?.Dispose();
        for (int k = 0; k < _order - 1; k++) _modelOutputs[k] = _modelOutputs[k + 1];
        _modelOutputs[^1] = x0;

        double sigmaNext = SigmaValues[i + 1];
        double alphaT, sigmaT, h;
        Tensor prev;
        if (sigmaNext == 0)
        {
            // lambda_t = +inf: exp(-h) = 0, sigma_t = 0, alpha_t = 1 → x_t = x0.
            alphaT = 1; sigmaT = 0; h = double.PositiveInfinity;
        }
        else
        {
            double lambdaT;
            (alphaT, sigmaT, lambdaT) = AlphaSigma(sigmaNext);
            h = lambdaT - lambdaS0;
        }
        double expMinusH = Math.Exp(-h);
        if (_order == 1 || _lowerOrderNums < 1 || lowerOrderFinal)
        {
            prev = (sigmaT / sigmaS0) * x - (alphaT * (expMinusH - 1.0)) * x0;
        }
        else
        {
            var (_, _, lambdaS1) = AlphaSigma(SigmaValues[i - 1]);
            var m0 = _modelOutputs[^1]!;
            var m1 = _modelOutputs[^2]!;
            double h0 = lambdaS0 - lambdaS1;
            double r0 = h0 / h;
            var d1 = (1.0 / r0) * (m0 - m1);
            if (_solverType == "midpoint")
                prev = (sigmaT / sigmaS0) * x - (alphaT * (expMinusH - 1.0)) * m0 - 0.5 * (alphaT * (expMinusH - 1.0)) * d1;
            else
                prev = (sigmaT / sigmaS0) * x - (alphaT * (expMinusH - 1.0)) * m0 + (alphaT * ((expMinusH - 1.0) / h + 1.0)) * d1;
        }
        if (_lowerOrderNums < _order) _lowerOrderNums++;
        StepIndex = i + 1;
        return prev.MoveToOuterDisposeScope();
    }

    public override void Dispose()
    {
        foreach (var t in _modelOutputs) t?.Dispose();
        Array.Clear(_modelOutputs);
    }

    public override Tensor AddNoise(Tensor originalSamples, Tensor noise, Tensor timesteps) =>
        AddNoiseWithSigmas(originalSamples, noise, timesteps, scaleLikeDpm: true);
}
