using System.Diagnostics;

namespace Ella.Benchmarks;

/// <summary>Median, min and max of repeated timings.</summary>
public sealed record TimingStats(double Median, double Min, double Max, int Runs)
{
    public static TimingStats Of(IReadOnlyList<double> seconds)
    {
        if (seconds.Count == 0) return new TimingStats(double.NaN, double.NaN, double.NaN, 0);
        var sorted = seconds.Order().ToList();
        double median = sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
        return new TimingStats(median, sorted[0], sorted[^1], sorted.Count);
    }

    public static TimingStats Measure(int runs, Action action, int warmup = 1)
    {
        for (int i = 0; i < warmup; i++) action();
        var times = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            var sw = Stopwatch.StartNew();
            action();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        return Of(times);
    }

    public override string ToString() => Runs <= 1 ? $"{Median:F3}" : $"{Median:F3} ({Min:F3}–{Max:F3})";
}
