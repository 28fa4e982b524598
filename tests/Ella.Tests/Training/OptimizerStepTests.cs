using Ella.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Tests.Training;

/// <summary>AdamW (torch.optim.AdamW), clip_grad_norm_ and the LR schedules against their formulas.</summary>
public class OptimizerStepTests
{
    [Fact]
    public void Clipping_and_adamw_follow_pytorch_formulas()
    {
        var p = new Parameter(tensor(new float[] { 0.5f, -1.0f, 2.0f }));
        var q = new Parameter(tensor(new float[] { 3.0f }));
        double lr = 0.01, wd = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8, maxNorm = 1.0;
        var opt = optim.AdamW(new[] { p, q }, lr, b1, b2, eps, wd);
        double[] P = [0.5, -1.0, 2.0, 3.0], m = new double[4], v = new double[4];
        for (int step = 1; step <= 3; step++)
        {
            opt.zero_grad();
            var loss = (p * p * p).sum() + q * 2.0 * step;
            loss.sum().backward();
            double[] g = [3 * P[0] * P[0], 3 * P[1] * P[1], 3 * P[2] * P[2], 2.0 * step];
            double norm = Math.Sqrt(g.Sum(x => x * x));
            double measured = GradientClipping.ClipGradNorm([p, q], maxNorm);
            Assert.Equal(norm, measured, 4);
            double coef = Math.Min(1.0, maxNorm / (norm + 1e-6));
            opt.step();
            for (int i = 0; i < 4; i++)
            {
                double gi = g[i] * coef;
                P[i] *= 1 - lr * wd;
                m[i] = b1 * m[i] + (1 - b1) * gi;
                v[i] = b2 * v[i] + (1 - b2) * gi * gi;
                P[i] -= lr / (1 - Math.Pow(b1, step)) * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(b2, step)) + eps);
            }
            var actual = p.data<float>().ToArray().Select(x => (double)x).Append(q.data<float>()[0]).ToArray();
            for (int i = 0; i < 4; i++) Assert.True(Math.Abs(actual[i] - P[i]) < 1e-6, $"step {step} element {i}: {actual[i]} vs {P[i]}");
        }
    }

    [Theory]
    [InlineData("constant", 0, 5, 1.0)]
    [InlineData("constant", 2, 1, 0.5)]
    [InlineData("linear", 0, 5, 0.5)]
    [InlineData("cosine", 0, 5, 0.5)]
    [InlineData("cosine", 2, 6, 0.5)]
    [InlineData("linear", 2, 0, 0.0)]
    public void Learning_rate_schedules_follow_diffusers(string kind, int warmup, int step, double expectedFactor)
    {
        var s = new LearningRateSchedule(kind, 1e-4, warmup, 10);
        Assert.Equal(expectedFactor * 1e-4, s.At(step), 12);
    }
}
