using System.Diagnostics;
using System.Text.Json;
using Ella.Benchmarks;
using Ella.Configs;
using Ella.Diagnostics;
using Ella.Modules.Ella;
using Ella.Modules.UNet;
using Ella.Schedulers;
using Ella.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Cli.Commands.Bench;

/// <summary>
/// <c>ella bench --train</c>: one connector training step on the full-size SD1.5 UNet with random weights, batch 1,
/// cached features (T5-XL width 2048, 128 tokens; no VAE or text encoder in memory), per dtype: the step time, the bf16
/// UNet forward at batch 1 in the same run (target: bf16 step ≤ 3.5× that forward) and the peak RSS (target ≤ 14 GB bf16).
/// </summary>
public static class TrainBench
{
    public static int Run(CliContext ctx, int runs, int size, IReadOnlyList<ScalarType> dtypes, string? workDir, bool asJson, int? threads = null)
    {
        if (runs < 1) throw new EllaException($"--runs must be at least 1, got {runs}");
        if (size < 64 || size % 8 != 0) throw new EllaException($"--size must be a multiple of 8 and at least 64, got {size}");
        Native.TorchRuntime.Initialize(threads);
        var log = asJson ? ctx.Error : ctx.Out;
        bool ownDir = workDir == null;
        string dir = workDir ?? Path.Combine(Path.GetTempPath(), $"ella-bench-train-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            string unetDir = Path.Combine(dir, "unet");
            if (!File.Exists(Path.Combine(unetDir, "diffusion_pytorch_model.safetensors")))
            {
                Directory.CreateDirectory(unetDir);
                var sw = Stopwatch.StartNew();
                var cfg = UNet2DConditionConfig.StableDiffusion15();
                File.WriteAllText(Path.Combine(unetDir, "config.json"), JsonSerializer.Serialize(cfg));
                using var meta = RandomCheckpoint.OnMeta(() => new UNet2DConditionModel(cfg));
                RandomCheckpoint.Write(meta, Path.Combine(unetDir, "diffusion_pytorch_model.safetensors"), seed: 5);
                log.WriteLine($"wrote random SD1.5 UNet in {sw.Elapsed.TotalSeconds:F1} s");
            }
            var results = new Dictionary<string, Dictionary<string, object?>>();
            foreach (var dtype in dtypes)
            {
                string name = DTypes.Name(dtype);
                log.WriteLine($"[{name}] training step, {size}², batch 1, cached features ({runs} timed runs after one warm-up)…");
                results[name] = Measure(unetDir, dtype, runs, size, log);
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            if (asJson)
                ctx.Out.WriteLine(JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
            else
            {
                ctx.Out.WriteLine();
                ctx.Out.WriteLine($"threads: {get_num_threads()}, runs: {runs}, size: {size}, batch 1 (median seconds)");
                foreach (var (name, r) in results)
                    ctx.Out.WriteLine($"{name}: train step {r["train_step_s"]} s, UNet forward {r["unet_forward_s"]} s, step/forward {r["step_over_forward"]}, peak RSS {r["peak_rss_mb"]} MB");
                if (results.TryGetValue("bf16", out var b))
                    ctx.Out.WriteLine($"targets (bf16): step ≤ 3.5× forward: {((double)b["step_over_forward"]! <= 3.5 ? "met" : "NOT met")}; peak RSS ≤ 14 GB: {((double)b["peak_rss_mb"]! <= 14 * 1024 ? "met" : "NOT met")}");
            }
            return EllaCli.ExitOk;
        }
        finally
        {
            if (ownDir) try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    static Dictionary<string, object?> Measure(string unetDir, ScalarType dtype, int runs, int size, TextWriter log)
    {
        ProcessMemory.ResetPeak();
        using var unet = UNet2DConditionModel.FromPretrained(unetDir, dtype);
        manual_seed(0);
        using var connector = new EllaConnector(new EllaConnectorConfig());
        var objective = new DiffusionObjective(new NoiseSchedule(SchedulerConfig.StableDiffusion15()), PredictionType.Epsilon, null);
        using var nullFeatures = randn(1, 2048);
        using var trainer = new ConnectorTrainer(unet, connector, objective, nullFeatures, new OptimizerSettings(), dtype);
        var gen = new Generator(1);
        int h = size / 8;
        TrainingBatch NewBatch() => new(randn([1, 4, h, h], generator: gen), randn([1, 4, h, h], generator: gen),
            randint(0, 1000, [1], dtype: ScalarType.Int64, generator: gen), [randn([128, 2048], generator: gen)], [false]);
        var steps = TimingStats.Measure(runs, () =>
        {
            using var batch = NewBatch();
            trainer.Step([batch], 1e-4);
        });
        double peak = ProcessMemory.PeakRssMb();
        log.WriteLine($"  train step {steps}, peak RSS {peak:F0} MB");
        using var sample = randn([1, 4, h, h]).to_type(dtype);
        using var t = tensor(new long[] { 500 });
        using var cond = randn([1, 64, 768]).to_type(dtype);
        var forward = TimingStats.Measure(runs, () =>
        {
            using var mode = inference_mode();
            using var _ = unet.forward(sample, t, cond);
        });
        log.WriteLine($"  UNet forward (batch 1) {forward}");
        return new Dictionary<string, object?>
        {
            ["train_step_s"] = Math.Round(steps.Median, 3),
            ["unet_forward_s"] = Math.Round(forward.Median, 3),
            ["step_over_forward"] = Math.Round(steps.Median / forward.Median, 2),
            ["peak_rss_mb"] = Math.Round(peak),
        };
    }
}
