using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Ella.Benchmarks;
using Ella.Configs;
using Ella.Diagnostics;
using Ella.Modules.Ella;
using Ella.Modules.T5;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Cli.Commands;

/// <summary>
/// <c>ella bench</c>: full-size models with random weights (written once to a work folder, then loaded like real
/// checkpoints), timed per stage for each dtype. Prints a table, or JSON with <c>--json</c>.
/// </summary>
public static class BenchCommand
{
    public static readonly string[] Stages = ["t5", "tsc", "unet", "vae", "psnr"];
    const int PsnrSteps = 3;

    public static Command Create(CliContext ctx)
    {
        var runs = new Option<int>("--runs") { Description = "Timed runs per stage (after one warm-up)", DefaultValueFactory = _ => 3 };
        var size = new Option<int>("--size") { Description = "Image size in pixels (multiple of 8)", DefaultValueFactory = _ => 512 };
        var dtypes = new Option<string>("--dtypes") { Description = "Comma-separated: fp32,bf16", DefaultValueFactory = _ => "fp32,bf16" };
        var only = new Option<string?>("--only") { Description = $"Comma-separated stages to run ({string.Join(",", Stages)}); default all" };
        var workDir = new Option<string?>("--work-dir") { Description = "Folder for the random-weight checkpoints (default: a temp folder, deleted after)" };
        var threads = new Option<int?>("--threads") { Description = "Intra-op threads (default: libtorch's choice, one per core)" };
        var json = new Option<bool>("--json") { Description = "Print {\"fp32\": {...}, \"bf16\": {...}} with the medians" };
        var train = new Option<bool>("--train") { Description = "Time one connector training step instead (full-size UNet, batch 1, cached features)" };
        var command = new Command("bench", "Time full-size random-weight SD1.5 + ELLA + FLAN-T5-XL: load, T5 encode, TSC and UNet per step (CFG), VAE decode, peak RSS")
            { runs, size, dtypes, only, workDir, threads, json, train };
        command.SetAction(p => p.GetValue(train)
            ? Bench.TrainBench.Run(ctx, p.GetValue(runs), p.GetValue(size), p.GetValue(dtypes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(DTypes.Parse).ToList(), p.GetValue(workDir), p.GetValue(json), p.GetValue(threads))
            : Run(ctx, p.GetValue(runs), p.GetValue(size), p.GetValue(dtypes)!, p.GetValue(only), p.GetValue(workDir), p.GetValue(threads), p.GetValue(json)));
        return command;
    }

    sealed class Result
    {
        public double LoadS;
        public TimingStats? Load;
        public TimingStats? T5Encode;
        public TimingStats? TscStep;
        public TimingStats? UnetStep;
        public TimingStats? VaeDecode;
        public double PeakRssMb;
        public Tensor? Image;
    }

    static int Run(CliContext ctx, int runs, int size, string dtypeList, string? only, string? workDir, int? threads, bool asJson)
    {
        if (runs < 1) throw new EllaException($"--runs must be at least 1, got {runs}");
        if (size < 64 || size % 8 != 0) throw new EllaException($"--size must be a multiple of 8 and at least 64, got {size}");
        var dtypes = dtypeList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(DTypes.Parse).ToList();
        var stages = only?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet() ?? Stages.ToHashSet();
        foreach (var s in stages) if (!Stages.Contains(s)) throw new EllaException($"--only: unknown stage '{s}' (stages: {string.Join(", ", Stages)})");
        Native.TorchRuntime.Initialize(threads);
        var log = asJson ? ctx.Error : ctx.Out;

        bool ownDir = workDir == null;
        string dir = workDir ?? Path.Combine(Path.GetTempPath(), $"ella-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            var files = PrepareCheckpoints(dir, stages, log);
            var results = new Dictionary<string, Result>();
            foreach (var dtype in dtypes)
            {
                log.WriteLine($"[{DTypes.Name(dtype)}] loading and timing ({runs} runs per stage)…");
                results[DTypes.Name(dtype)] = Measure(files, stages, dtype, runs, size, log);
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            double? psnr = null;
            if (results.TryGetValue("fp32", out var f32) && results.TryGetValue("bf16", out var b16) && f32.Image is { } a && b16.Image is { } b)
            {
                using var mse = (a - b).pow(2).mean();
                psnr = 10 * Math.Log10(1.0 / Math.Max(mse.item<float>(), 1e-12));
                log.WriteLine($"bf16 vs fp32 image ({size}×{size}, {PsnrSteps} DPM++ steps, CFG 7.5, same seed): PSNR {psnr:F2} dB");
            }
            if (asJson)
            {
                var doc = results.ToDictionary(kv => kv.Key, kv => new Dictionary<string, object?>
                {
                    ["load_s"] = Round(kv.Value.LoadS),
                    ["t5_encode_s"] = Round(kv.Value.T5Encode?.Median),
                    ["tsc_step_s"] = Round(kv.Value.TscStep?.Median),
                    ["unet_step_s"] = Round(kv.Value.UnetStep?.Median),
                    ["vae_decode_s"] = Round(kv.Value.VaeDecode?.Median),
                    ["peak_rss_mb"] = Math.Round(kv.Value.PeakRssMb),
                });
                if (psnr is { } db) doc["bf16"]["psnr_vs_fp32_db"] = Math.Round(db, 2);
                ctx.Out.WriteLine(JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
            }
            else
            {
                ctx.Out.WriteLine();
                ctx.Out.WriteLine($"threads: {torch.get_num_threads()}, runs: {runs}, size: {size}  (median, min–max, seconds)");
                ctx.Out.WriteLine($"{"stage",-28}" + string.Concat(results.Keys.Select(k => $"{k,-26}")));
                void Row(string name, Func<Result, string> cell) => ctx.Out.WriteLine($"{name,-28}" + string.Concat(results.Values.Select(r => $"{cell(r),-26}")));
                Row("load (all models)", r => r.Load?.ToString() ?? $"{r.LoadS:F2}");
                Row("T5-XL encode (1×128)", r => r.T5Encode?.ToString() ?? "–");
                Row("TSC step (2×128 → 2×64)", r => r.TscStep?.ToString() ?? "–");
                Row($"UNet step (CFG, 2×{size / 8}²)", r => r.UnetStep?.ToString() ?? "–");
                Row($"VAE decode (1×{size}²)", r => r.VaeDecode?.ToString() ?? "–");
                Row("TSC share of a step", r => r.TscStep != null && r.UnetStep != null ? $"{100 * r.TscStep.Median / (r.TscStep.Median + r.UnetStep.Median):F2} %" : "–");
                Row("peak RSS (MB)", r => $"{r.PeakRssMb:F0}");
                if (psnr is { } db) ctx.Out.WriteLine($"bf16 image vs fp32 image: PSNR {db:F2} dB ({PsnrSteps} steps, full-size random weights)");
            }
            return EllaCli.ExitOk;
        }
        finally
        {
            if (ownDir) try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    static double? Round(double? v) => v is { } x ? Math.Round(x, 4) : null;

    sealed record Files(string? T5Folder, string? EllaFile, string? UnetFolder, string? VaeFolder);

    static Files PrepareCheckpoints(string dir, HashSet<string> stages, TextWriter log)
    {
        string? t5 = null, ella = null;
        if (stages.Contains("t5"))
        {
            t5 = Path.Combine(dir, "flan-t5-xl");
            if (!File.Exists(Path.Combine(t5, "model.safetensors")))
            {
                Directory.CreateDirectory(t5);
                var sw = Stopwatch.StartNew();
                var cfg = T5Config.FlanT5Xl();
                File.WriteAllText(Path.Combine(t5, "config.json"), JsonSerializer.Serialize(cfg));
                using var meta = RandomCheckpoint.OnMeta(() => new T5EncoderModel(cfg));
                RandomCheckpoint.Write(meta, Path.Combine(t5, "model.safetensors"), seed: 1, skip: k => k == "encoder.embed_tokens.weight");
                log.WriteLine($"wrote random FLAN-T5-XL encoder ({new FileInfo(Path.Combine(t5, "model.safetensors")).Length / 1e9:F2} GB) in {sw.Elapsed.TotalSeconds:F1} s");
            }
        }
        if (stages.Contains("tsc"))
        {
            ella = Path.Combine(dir, "ella-sd1.5-tsc-t5xl.safetensors");
            if (!File.Exists(ella))
            {
                using var meta = RandomCheckpoint.OnMeta(() => new EllaConnector(new EllaConnectorConfig()));
                RandomCheckpoint.Write(meta, ella, seed: 2);
            }
        }
        string? unet = null, vae = null;
        if (stages.Contains("unet"))
        {
            unet = Path.Combine(dir, "unet");
            if (!File.Exists(Path.Combine(unet, "diffusion_pytorch_model.safetensors")))
            {
                Directory.CreateDirectory(unet);
                var sw = Stopwatch.StartNew();
                var cfg = UNet2DConditionConfig.StableDiffusion15();
                File.WriteAllText(Path.Combine(unet, "config.json"), JsonSerializer.Serialize(cfg));
                using var meta = RandomCheckpoint.OnMeta(() => new Modules.UNet.UNet2DConditionModel(cfg));
                RandomCheckpoint.Write(meta, Path.Combine(unet, "diffusion_pytorch_model.safetensors"), seed: 5);
                log.WriteLine($"wrote random SD1.5 UNet in {sw.Elapsed.TotalSeconds:F1} s");
            }
        }
        if (stages.Contains("vae"))
        {
            vae = Path.Combine(dir, "vae");
            if (!File.Exists(Path.Combine(vae, "diffusion_pytorch_model.safetensors")))
            {
                Directory.CreateDirectory(vae);
                var cfg = AutoencoderKLConfig.StableDiffusion15();
                File.WriteAllText(Path.Combine(vae, "config.json"), JsonSerializer.Serialize(cfg));
                using var meta = RandomCheckpoint.OnMeta(() => new Modules.Vae.AutoencoderKL(cfg));
                RandomCheckpoint.Write(meta, Path.Combine(vae, "diffusion_pytorch_model.safetensors"), seed: 6);
            }
        }
        return new Files(t5, ella, unet, vae);
    }

    static Result Measure(Files files, HashSet<string> stages, ScalarType dtype, int runs, int size, TextWriter log)
    {
        var result = new Result();
        ProcessMemory.ResetPeak();
        // Cold start, `runs` times: all models from their safetensors files. The first load may read from disk; the
        // median is the load from the page cache; the table shows both ends.
        var loads = new List<double>();
        for (int i = 0; i < runs - 1; i++)
        {
            var sw0 = Stopwatch.StartNew();
            using (files.T5Folder != null ? T5EncoderModel.FromPretrained(files.T5Folder, dtype) : null)
            using (files.EllaFile != null ? EllaConnector.FromPretrained(files.EllaFile, dtype) : null)
            using (files.UnetFolder != null ? Modules.UNet.UNet2DConditionModel.FromPretrained(files.UnetFolder, dtype) : null)
            using (files.VaeFolder != null ? Modules.Vae.AutoencoderKL.FromPretrained(files.VaeFolder, dtype) : null)
                loads.Add(sw0.Elapsed.TotalSeconds);
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        var sw = Stopwatch.StartNew();
        var t5 = files.T5Folder != null ? T5EncoderModel.FromPretrained(files.T5Folder, dtype) : null;
        double t5Load = sw.Elapsed.TotalSeconds;
        using var ella = files.EllaFile != null ? EllaConnector.FromPretrained(files.EllaFile, dtype) : null;
        double ellaLoad = sw.Elapsed.TotalSeconds - t5Load;
        using var unet = files.UnetFolder != null ? Modules.UNet.UNet2DConditionModel.FromPretrained(files.UnetFolder, dtype) : null;
        double unetLoad = sw.Elapsed.TotalSeconds - t5Load - ellaLoad;
        using var vae = files.VaeFolder != null ? Modules.Vae.AutoencoderKL.FromPretrained(files.VaeFolder, dtype) : null;
        loads.Add(sw.Elapsed.TotalSeconds);
        result.Load = TimingStats.Of(loads);
        result.LoadS = result.Load.Median;
        log.WriteLine($"  load: {result.Load} s (last: T5 {t5Load:F2} s, TSC {ellaLoad:F2} s, UNet {unetLoad:F2} s, VAE {loads[^1] - t5Load - ellaLoad - unetLoad:F2} s)");

        using (torch.inference_mode())
        {
            if (t5 != null)
            {
                using var ids = torch.randint(0, 32100, [1, 128], dtype: ScalarType.Int64, generator: new Generator(3));
                using var mask = torch.ones(1, 128, dtype: ScalarType.Int64);
                result.T5Encode = TimingStats.Measure(runs, () => { using var s = NewDisposeScope(); t5.forward(ids, mask); });
                log.WriteLine($"  T5 encode: {result.T5Encode} s");
                // As `ella generate` does: T5 is freed once the prompts are encoded, before denoising.
                t5.Dispose();
                t5 = null;
            }
            if (ella != null)
            {
                using var features = torch.randn(2, 128, ella.Config.InputDim ?? ella.Config.Width, generator: new Generator(4)).to_type(dtype);
                int step = 0;
                result.TscStep = TimingStats.Measure(runs, () =>
                {
                    using var s = NewDisposeScope();
                    ella.forward(features, torch.tensor(999L - 40 * step++));
                });
                log.WriteLine($"  TSC step: {result.TscStep} s");
            }
            if (unet != null)
            {
                long h = size / 8;
                using var x = torch.randn(2, 4, h, h, generator: new Generator(5)).to_type(dtype);
                using var context = torch.randn(2, 64, unet.Config.CrossAttentionDim, generator: new Generator(6)).to_type(dtype);
                int step = 0;
                result.UnetStep = TimingStats.Measure(runs, () =>
                {
                    using var s = NewDisposeScope();
                    unet.forward(x, torch.tensor(999L - 40 * step++), context);
                });
                log.WriteLine($"  UNet step: {result.UnetStep} s");
            }
            if (unet != null && vae != null && ella != null && stages.Contains("psnr"))
            {
                // A short full pipeline run from fixed random text features and a fixed seed, kept for the bf16/fp32 PSNR.
                using var s = NewDisposeScope();
                var features = torch.randn(1, 128, ella.Config.InputDim ?? ella.Config.Width, generator: new Generator(11));
                var negative = torch.randn(1, 1, ella.Config.InputDim ?? ella.Config.Width, generator: new Generator(12));
                using var cond = new Pipelines.EllaConditioner(ella, [features], dtype);
                using var uncond = new Pipelines.EllaConditioner(ella, [negative], dtype);
                using var scheduler = Schedulers.SchedulerFactory.Create("dpm++2m", SchedulerConfig.StableDiffusion15());
                scheduler.SetTimesteps(PsnrSteps);
                var generator = new Generator(1234);
                var latents = Pipelines.DenoisingLoop.InitialLatents(1, 4, size / 8, size / 8, generator, scheduler.InitNoiseSigma, CPU);
                var final = Pipelines.DenoisingLoop.Run(unet, scheduler, latents, cond, uncond, 7.5, generator, dtype);
                result.Image = Pipelines.DenoisingLoop.Decode(vae, final, dtype).MoveToOuterDisposeScope();
            }
            if (vae != null)
            {
                long h = size / 8;
                using var z = (torch.randn(1, 4, h, h, generator: new Generator(7)) / vae.Config.ScalingFactor).to_type(dtype);
                result.VaeDecode = TimingStats.Measure(runs, () => { using var s = NewDisposeScope(); vae.Decode(z); });
                log.WriteLine($"  VAE decode: {result.VaeDecode} s");
            }
        }
        result.PeakRssMb = ProcessMemory.PeakRssMb();
        return result;
    }
}

/// <summary>The dtype names used on the command line.</summary>
public static class DTypes
{
    public static ScalarType Parse(string name) => name.ToLowerInvariant() switch
    {
        "fp32" or "float32" or "f32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "float16" or "f16" => ScalarType.Float16,
        _ => throw new EllaException($"unknown dtype '{name}' (fp32, bf16; fp16 on CUDA only)"),
    };

    public static string Name(ScalarType t) => t switch
    {
        ScalarType.Float32 => "fp32",
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "fp16",
        _ => t.ToString(),
    };
}
