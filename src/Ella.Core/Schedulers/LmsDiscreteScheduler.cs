using Ella.Configs;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Schedulers;

/// <summary>
/// Linear multistep (diffusers' LMSDiscreteScheduler, order 4 by default): the last derivatives weighted by integrals
/// of their Lagrange basis polynomials over [σ_i, σ_{i+1}]. The integrand is a polynomial of degree &lt; 4, so a
/// 4-point Gauss–Legendre rule integrates it exactly (diffusers uses adaptive quadrature for the same integral).
/// </summary>
public sealed class LmsDiscreteScheduler : SigmaSchedulerBase
{
    readonly List<Tensor> _derivatives = new();

    public LmsDiscreteScheduler(SchedulerConfig config) : base(config) { }

    public override string ClassName => "LMSDiscreteScheduler";
    public override string DisplayName => Karras ? "LMS Karras" : "LMS";

    /// <summary>Order of the method (the pipeline default is 4).</summary>
    public int Order { get; set; } = 4;

    public override void Dispose() => OnSetTimesteps();

    protected override void OnSetTimesteps()
    {
        foreach (var d in _derivatives) d.Dispose();
        _derivatives.Clear();
    }

    static readonly double[] GaussNodes = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
    static readonly double[] GaussWeights = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];

    internal double Coefficient(int order, int t, int currentOrder)
    {
        double Basis(double tau)
        {
            double prod = 1.0;
            for (int k = 0; k < order; k++)
            {
                if (k == currentOrder) continue;
                prod *= (tau - SigmaValues[t - k]) / (SigmaValues[t - currentOrder] - SigmaValues[t - k]);
            }
            return prod;
        }
        double a = SigmaValues[t], b = SigmaValues[t + 1];
        double half = (b - a) / 2, mid = (a + b) / 2, sum = 0;
        for (int i = 0; i < GaussNodes.Length; i++) sum += GaussWeights[i] * Basis(mid + half * GaussNodes[i]);
        return sum * half;
    }

    public override Tensor Step(Tensor modelOutput, double timestep, Tensor sample, Generator? generator = null)
    {
        RequireTimesteps();
        int i = CurrentStepIndex(timestep);
        double sigma = SigmaValues[i];
        using var scope = NewDisposeScope();
        var x = sample.to_type(ScalarType.Float32);
        var x0 = PredictOriginalFromSigma(modelOutput.to_type(ScalarType.Float32), x, sigma);
        var derivative = ((x - x0) / sigma).DetachFromDisposeScope();
        _derivatives.Add(derivative);
        if (_derivatives.Count > Order) { _derivatives[0].Dispose(); _derivatives.RemoveAt(0); }
        int order = Math.Min(i + 1, Order);
        var prev = x.clone();
        for (int k = 0; k < order; k++)
            prev = prev + Coefficient(order, i, k) * _derivatives[_derivatives.Count - 1 - k];
        StepIndex = i + 1;
        return prev.MoveToOuterDisposeScope();
    }
}
