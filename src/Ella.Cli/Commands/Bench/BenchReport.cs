using System.Text.Json;
using Ella.Hardware;

namespace Ella.Cli.Commands.Bench;

/// <summary>Prints a bench: a table for people, or the <c>--json</c> document for scripts.</summary>
public static class BenchReport
{
    /// <summary>
    /// <c>{"machine": {...}, "auto_dtype", "size", "runs", "fp32": {...}, "bf16": {...}}</c>; per dtype the medians
    /// <c>load_s</c>, <c>t5_encode_s</c>, <c>tsc_step_s</c>, <c>unet_step_s</c>, <c>vae_decode_s</c>, <c>peak_rss_mb</c>,
    /// <c>emulated</c>, <c>peak_gflops</c>; with the tools' stages <c>controlnet_embed_s</c>, <c>controlnet_step_s</c>,
    /// <c>controlnet_over_unet</c> (the two steps' ratio, one run), <c>lora_first_merge_s</c>, <c>lora_merge_s</c>,
    /// <c>lora_unmerge_s</c>; and per stage <c>*_gflop</c> (analytic), <c>*_limit_s</c> (FLOPs ÷ peak)
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
            foreach (var key in Keys)
            {
                var s = r.Stage(key);
                if (s == null && ToolKeys.Contains(key)) continue;
                d[$"{key}_s"] = Round(s?.Time?.Median);
                if (s == null || s.Flops <= 0) continue;
                d[$"{key}_gflop"] = Math.Round(s.Flops / 1e9, 3);
                d[$"{key}_limit_s"] = Round(s.Flops / (peak * 1e9));
                d[$"{key}_efficiency"] = Efficiency(r, s, peak) is { } e ? Math.Round(e, 4) : null;
            }
            if (ControlNetOverUnet(r) is { } ratio) d["controlnet_over_unet"] = Math.Round(ratio, 4);
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
        w.WriteLine($"{machine.LinearSummary()} (ELLA_LINEAR_KERNEL overrides)");
        w.WriteLine($"malloc: {Native.MallocTuning.State}");
        w.WriteLine($"MKL dispatch: {Native.MklCpuDispatch.State}");
        w.WriteLine($"threads: {machine.Threads}, runs: {runs}, size: {size}, auto dtype: {DTypeChoice.Name(machine.AutoDType)}  (median, min–max, seconds)");
        string Cell(string s) => $"{s,-26}";
        int labelWidth = Math.Max(34, results.SelectMany(r => r.Stages).Select(s => s.Label.Length + 2).DefaultIfEmpty(0).Max());
        w.WriteLine("".PadRight(labelWidth) + string.Concat(results.Select(r => Cell(DTypeChoice.Name(r.DType) + (r.Emulated ? " (emulated)" : "")))));
        void Row(string name, Func<DTypeResult, string> cell) => w.WriteLine(name.PadRight(labelWidth) + string.Concat(results.Select(r => Cell(cell(r)))));
        Row("peak matmul / conv (GFLOP/s)", r => $"{machine.Matmul[r.DType].Gflops:F1} / {machine.Conv[r.DType].Gflops:F1}");
        Row("load (all models)", r => r.Load?.ToString() ?? "–");
        foreach (var key in Keys)
        {
            var label = results.Select(r => r.Stage(key)?.Label).FirstOrDefault(l => l != null);
            if (label == null) continue;
            Row(label, r => r.Stage(key) is { } s ? s.Time?.ToString() ?? "skipped" : "–");
            if (results.All(r => r.Stage(key) is not { Flops: > 0 })) continue;
            Row($"  GFLOP / limit / efficiency", r => r.Stage(key) is { Flops: > 0 } s
                ? $"{s.Flops / 1e9:F1} / {s.Flops / (machine.PeakGflops(r.DType) * 1e9):F3} / {(Efficiency(r, s, machine.PeakGflops(r.DType)) is { } e ? $"{100 * e:F0} %" : r.Emulated ? "– (emulated)" : "–")}"
                : "–");
        }
        if (results.Any(r => ControlNetOverUnet(r) != null))
            Row("ControlNet step ÷ UNet step", r => ControlNetOverUnet(r) is { } x ? $"{x:F2}× (budget 0.6×)" : "–");
        Row("TSC share of a step", r => r.Stage("tsc_step")?.Time is { } t && r.Stage("unet_step")?.Time is { } u ? $"{100 * t.Median / (t.Median + u.Median):F2} %" : "–");
        Row("peak RSS (MB)", r => $"{r.PeakRssMb:F0}");
        if (psnr is { } db) w.WriteLine($"bf16 image vs fp32 image: PSNR {db:F2} dB ({StageTimer.PsnrSteps} steps, random weights)");
        foreach (var r in results)
            foreach (var s in r.Stages.Where(s => s.SkipReason != null))
                w.WriteLine($"{DTypeChoice.Name(r.DType)} {s.Label}: skipped ({s.SkipReason})");
    }

    /// <summary>The stages in report order; the tools' stages appear only when they ran.</summary>
    static readonly string[] ModelKeys = ["t5_encode", "tsc_step", "unet_step", "vae_decode"];
    static readonly string[] ToolKeys = ["controlnet_embed", "controlnet_step", "lora_first_merge", "lora_merge", "lora_unmerge"];
    static readonly string[] Keys = [.. ModelKeys, .. ToolKeys];

    /// <summary>
    /// A stage's efficiency (achieved FLOP/s ÷ the dtype's peak), or null for an emulated dtype: its "peak" is a small
    /// problem's rate in libtorch's fallback loops, which some stages' shapes beat many times over (a bf16 TSC step ran
    /// at 15 GFLOP/s against an emulated matmul "peak" of 1.3 on a Zen 3), so the ratio would mean nothing.
    /// </summary>
    public static double? Efficiency(DTypeResult r, StageTiming s, double peakGflops) => r.Emulated ? null : s.Efficiency(peakGflops);

    /// <summary>A ControlNet step over the UNet step it accompanies, both measured in this run.</summary>
    public static double? ControlNetOverUnet(DTypeResult r) =>
        r.Stage("controlnet_step")?.Time is { Median: > 0 } c && r.Stage("unet_step")?.Time is { Median: > 0 } u ? c.Median / u.Median : null;

    static double? Round(double? v) => v is { } x && double.IsFinite(x) ? Math.Round(x, 4) : null;
}
