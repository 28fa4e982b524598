using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Benchmarks;

/// <summary>A measured kernel rate: the best of the timed runs, with the problem that was timed.</summary>
public sealed record PeakMeasurement(double Gflops, string Problem, int Runs);

/// <summary>
/// The machine's measured compute peaks per dtype: a square matmul and a 3×3 convolution of UNet-like shape, timed
/// with the threads set for the process. A stage's compute limit is its analytic FLOPs ÷ the higher of the two.
/// A dtype without native kernels is timed once on a small problem (its emulated kernels run at ~1 GFLOP/s, where the
/// full-size problem would take a minute).
/// </summary>
public static class PeakThroughput
{
    /// <summary>Matmul n×n · n×n, 2n³ FLOPs; best rate over runs lasting at least <paramref name="minSeconds"/> in all.</summary>
    public static PeakMeasurement Matmul(ScalarType dtype, bool emulated, int n = 2048, double minSeconds = 1.0)
    {
        if (emulated) n = Math.Min(n, 256);
        using var scope = NewDisposeScope();
        var gen = new Generator(1);
        var a = randn(n, n, generator: gen).to_type(dtype);
        var b = randn(n, n, generator: gen).to_type(dtype);
        double flops = 2.0 * n * n * n;
        var (gflops, runs) = Best(() => { using var c = a.matmul(b); }, flops, emulated, minSeconds);
        return new PeakMeasurement(gflops, $"matmul {n}×{n}", runs);
    }

    /// <summary>3×3 convolution, <paramref name="channels"/>→<paramref name="channels"/>, padding 1, on a [batch, channels, size, size] input.</summary>
    public static PeakMeasurement Conv3x3(ScalarType dtype, bool emulated, int channels = 320, int size = 64, int batch = 2, double minSeconds = 1.0)
    {
        if (emulated) (size, batch) = (Math.Min(size, 16), 1);
        using var scope = NewDisposeScope();
        var gen = new Generator(2);
        var x = randn(batch, channels, size, size, generator: gen).to_type(dtype);
        var w = (randn(channels, channels, 3, 3, generator: gen) * 0.02).to_type(dtype);
        double flops = 2.0 * batch * size * size * channels * channels * 9;
        using var _ = torch.inference_mode();
        var (gflops, runs) = Best(() => { using var y = nn.functional.conv2d(x, w, padding: [1, 1]); }, flops, emulated, minSeconds);
        return new PeakMeasurement(gflops, $"conv 3×3 {channels} ch, {size}², batch {batch}", runs);
    }

    /// <summary>
    /// A float32 inference linear by one <see cref="Modules.Common.LinearKernelKind"/>: <paramref name="rows"/>×<paramref name="inFeatures"/> →
    /// <paramref name="outFeatures"/> (default: the GEGLU projection of SD1.5's 64² transformer blocks, batch 2).
    /// </summary>
    public static PeakMeasurement Linear(Modules.Common.LinearKernelKind kind, long rows = 8192, long inFeatures = 320, long outFeatures = 2560, double minSeconds = 1.0)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator(3);
        using var linear = nn.Linear(inFeatures, outFeatures);
        var x = randn([rows, inFeatures], generator: gen);
        double flops = 2.0 * rows * inFeatures * outFeatures;
        using var _ = torch.inference_mode();
        var (gflops, runs) = Best(() => { using var y = Modules.Common.LinearKernel.Apply(linear, x, kind); }, flops, false, minSeconds);
        return new PeakMeasurement(gflops, $"linear {rows}×{inFeatures} → {outFeatures}", runs);
    }

    static (double Gflops, int Runs) Best(Action op, double flops, bool once, double minSeconds)
    {
        if (!once) op(); // warm-up: kernel selection, oneDNN primitive creation, page faults
        double best = double.MaxValue, total = 0;
        int runs = 0;
        do
        {
            var sw = Stopwatch.StartNew();
            op();
            double s = sw.Elapsed.TotalSeconds;
            best = Math.Min(best, s);
            total += s;
            runs++;
        } while (!once && (total < minSeconds || runs < 3) && runs < 50);
        return (flops / best / 1e9, runs);
    }
}
