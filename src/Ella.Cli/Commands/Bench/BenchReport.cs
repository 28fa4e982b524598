using System.Text.Json;
using Ella.Hardware;

namespace Ella.Cli.Commands.Bench;

/// <summary>Prints a bench: a table for people, or the <c>--json</c> document for scripts.</summary>
public static class BenchReport
{
    /// <summary>
    /// <c>{"machine": {...}, "auto_dtype", "size", "runs", "fp32": {...}, "bf16": {...}}</c>; per dtype the medians
    /// <c>load_s</c>, <c>t5_encode_s</c>, <c>tsc_step_s</c>, <c>unet_step_s</c>, <c>vae_decode_s</c>, <c>peak_rss_mb</c>,
    /// <c>emulated</c>, <c>peak_gflops</c>, and per stage <c>*_gflop</c> (analytic), <c>*_limit_s</c> (FLOPs ÷ peak)
    /// and <c>*_efficiency</c> (achieved FLOP/s ÷ peak); <c>skipped</c> names stages not run and why.
    /// </summary>
    public static Dictionary<string, object?> Json(MachineProfile machine, IReadOnlyList<DTypeResult> results, double? psnr, int size, int runs)
    {
        var doc = new Dictionary<string, object?>
        {
            ["machine"] = machine.ToJson(),
            ["auto_dtype"] = DTypeChoice.Name(machine.AutoDType),
            ["size"] = size,
            ["runs"] = runs,
        };
        foreach (var r in results)
        {
            double peak = machine.PeakGflops(r.DType);
            var d = new Dictionary<string, object?>
            {
                ["load_s"] = Round(r.Load?.Median),
                ["emulated"] = r.Emulated,
                ["peak_gflops"] = Math.Round(peak, 2),
            };
            foreach (var key in new[] { "t5_encode", "tsc_step", "unet_step", "vae_decode" })
            {
                var s = r.Stage(key);
                d[$"{key}_s"] = Round(s?.Time?.Median);
                if (s == null) continue;
                d[$"{key}_gflop"] = Math.Round(s.Flops / 1e9, 3);
                d[$"{key}_limit_s"] = Round(s.Flops / (peak * 1e9));
                d[$"{key}_efficiency"] = s.Efficiency(peak) is { } e ? Math.Round(e, 4) : null;
            }
            d["peak_rss_mb"] = Math.Round(r.PeakRssMb);
            var skipped = r.Stages.Where(s => s.SkipReason != null).ToDictionary(s => s.Key, s => s.SkipReason);
            if (skipped.Count > 0) d["skipped"] = skipped;
            if (psnr is { } db && DTypeChoice.Name(r.DType) == "bf16") d["psnr_vs_fp32_db"] = Math.Round(db, 2);
            doc[DTypeChoice.Name(r.DType)] = d;
        }
        return doc;
    }

    public static string JsonText(Dictionary<string, object?> doc) => JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true });

    public static void Table(TextWriter w, MachineProfile machine, IReadOnlyList<DTypeResult> results, double? psnr, int size, int runs)
    {
        w.WriteLine();
        w.WriteLine($"CPU: {machine.Cpu.Describe()}");
        w.WriteLine($"threads: {machine.Threads}, runs: {runs}, size: {size}, auto dtype: {DTypeChoice.Name(machine.AutoDType)}  (median, min–max, seconds)");
        string Cell(string s) => $"{s,-26}";
        w.WriteLine($"{"",-34}" + string.Concat(results.Select(r => Cell(DTypeChoice.Name(r.DType) + (r.Emulated ? " (emulated)" : "")))));
        void Row(string name, Func<DTypeResult, string> cell) => w.WriteLine($"{name,-34}" + string.Concat(results.Select(r => Cell(cell(r)))));
        Row("peak matmul / conv (GFLOP/s)", r => $"{machine.Matmul[r.DType].Gflops:F1} / {machine.Conv[r.DType].Gflops:F1}");
        Row("load (all models)", r => r.Load?.ToString() ?? "–");
        foreach (var key in new[] { "t5_encode", "tsc_step", "unet_step", "vae_decode" })
        {
            var label = results.Select(r => r.Stage(key)?.Label).FirstOrDefault(l => l != null);
            if (label == null) continue;
            Row(label, r => r.Stage(key) is { } s ? s.Time?.ToString() ?? "skipped" : "–");
            Row($"  GFLOP / limit / efficiency", r => r.Stage(key) is { } s
                ? $"{s.Flops / 1e9:F1} / {s.Flops / (machine.PeakGflops(r.DType) * 1e9):F3} / {(s.Efficiency(machine.PeakGflops(r.DType)) is { } e ? $"{100 * e:F0} %" : "–")}"
                : "–");
        }
        Row("TSC share of a step", r => r.Stage("tsc_step")?.Time is { } t && r.Stage("unet_step")?.Time is { } u ? $"{100 * t.Median / (t.Median + u.Median):F2} %" : "–");
        Row("peak RSS (MB)", r => $"{r.PeakRssMb:F0}");
        if (psnr is { } db) w.WriteLine($"bf16 image vs fp32 image: PSNR {db:F2} dB ({StageTimer.PsnrSteps} steps, random weights)");
        foreach (var r in results)
            foreach (var s in r.Stages.Where(s => s.SkipReason != null))
                w.WriteLine($"{DTypeChoice.Name(r.DType)} {s.Label}: skipped ({s.SkipReason})");
    }

    static double? Round(double? v) => v is { } x && double.IsFinite(x) ? Math.Round(x, 4) : null;
}
