using System.CommandLine;
using Ella.Cli.Commands.Bench;
using Ella.Hardware;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Cli.Commands;

/// <summary>
/// <c>ella bench</c>: measures the machine (CPU, matmul and convolution peaks per dtype), then full-size models with
/// random weights (written once to a work folder, then loaded like real checkpoints), timed per stage for each dtype,
/// with each stage's analytic FLOPs and its efficiency against the measured peak. The pieces live in
/// <c>Commands/Bench/</c>: <see cref="BenchModels"/> (configs and checkpoints), <see cref="MachineProfile"/> (peaks),
/// <see cref="StageTimer"/> (the stages), <see cref="BenchReport"/> (table and JSON).
/// </summary>
public static class BenchCommand
{
    public static readonly string[] Stages = ["t5", "tsc", "unet", "vae", "psnr", "controlnet", "lora"];

    public static Command Create(CliContext ctx)
    {
        var runs = new Option<int>("--runs") { Description = "Timed runs per stage (after one warm-up; an emulated dtype runs once)", DefaultValueFactory = _ => 3 };
        var size = new Option<int>("--size") { Description = "Image size in pixels (multiple of 8)", DefaultValueFactory = _ => 512 };
        var dtypes = new Option<string?>("--dtypes") { Description = "Comma-separated dtypes: auto, fp32, bf16 (default: auto's choice and fp32)" };
        var only = new Option<string?>("--only") { Description = $"Comma-separated stages to run ({string.Join(",", Stages)}); default all" };
        var workDir = new Option<string?>("--work-dir") { Description = "Folder for the random-weight checkpoints (default: a temp folder, deleted after)" };
        var threads = new Option<int?>("--threads") { Description = "Intra-op threads (default: one per physical core)" };
        var tiny = new Option<bool>("--tiny") { Description = "Tiny random models of the same architecture and small peak problems instead of the real sizes (a quick check of the command, not figures to quote)" };
        var train = new Option<bool>("--train") { Description = "Time one connector training step instead (full-size UNet, batch 1, cached features; --dtypes default auto's choice and fp32)" };
        var json = new Option<bool>("--json") { Description = "Print {\"machine\": {...}, \"auto_dtype\", \"fp32\": {...}, \"bf16\": {...}}" };
        var command = new Command("bench", "Measure this machine (matmul/conv peaks per dtype) and time full-size random-weight SD1.5 + ELLA + FLAN-T5-XL per stage, with FLOPs and efficiency")
            { runs, size, dtypes, only, workDir, threads, tiny, json, train };
        command.SetAction(p => p.GetValue(train)
            ? Bench.TrainBench.Run(ctx, p.GetValue(runs), p.GetValue(size), TrainDTypes(p.GetValue(dtypes)), p.GetValue(workDir), p.GetValue(json), p.GetValue(threads))
            : Run(ctx, p.GetValue(runs), p.GetValue(size), p.GetValue(dtypes), p.GetValue(only), p.GetValue(workDir), p.GetValue(threads), p.GetValue(tiny), p.GetValue(json)));
        return command;
    }

    /// <summary>The dtypes of <c>--train</c>: the list given (auto resolved), else auto's choice and fp32.</summary>
    static List<ScalarType> TrainDTypes(string? list) =>
        (list ?? "auto,fp32").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(n => DTypeChoice.Resolve(n).DType).Distinct().ToList();

    static int Run(CliContext ctx, int runs, int size, string? dtypeList, string? only, string? workDir, int? threads, bool tiny, bool asJson)
    {
        if (runs < 1) throw new EllaException($"--runs must be at least 1, got {runs}");
        if (size < 64 || size % 8 != 0) throw new EllaException($"--size must be a multiple of 8 and at least 64, got {size}");
        var stages = only?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet() ?? Stages.ToHashSet();
        foreach (var s in stages) if (!Stages.Contains(s)) throw new EllaException($"--only: unknown stage '{s}' (stages: {string.Join(", ", Stages)})");
        if (threads is <= 0) throw new EllaException($"--threads must be at least 1, got {threads}");
        var log = asJson ? ctx.Error : ctx.Out;
        var requested = (dtypeList ?? "auto,fp32").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (requested.Length == 0) throw new EllaException("--dtypes: give at least one dtype (auto, fp32, bf16)");
        Native.TorchRuntime.Initialize(threads);
        var dtypes = new List<ScalarType>();
        foreach (var name in requested)
        {
            var choice = DTypeChoice.Resolve(name, CPU);
            if (choice.DType == ScalarType.Float16) throw new EllaException("--dtypes fp16: not supported on the CPU (no fast fp16 kernels); use bf16 or fp32");
            if (!dtypes.Contains(choice.DType)) dtypes.Add(choice.DType);
        }
        // fp32 first, so the table reads as before and bf16's PSNR has its reference.
        dtypes = dtypes.OrderBy(d => d == ScalarType.Float32 ? 0 : 1).ToList();

        log.WriteLine($"CPU: {CpuInfo.Current.Describe()}; threads {torch.get_num_threads()}; auto dtype {DTypeChoice.Name(DTypeChoice.Auto(CPU))}");
        log.WriteLine("measuring peaks…");
        var machine = MachineProfile.Measure(dtypes, log, quick: tiny);
        var models = tiny ? BenchModels.Tiny() : BenchModels.Full();

        bool ownDir = workDir == null;
        string dir = workDir ?? Path.Combine(Path.GetTempPath(), $"ella-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        try
        {
            var files = models.Prepare(dir, stages, log);
            var results = new List<DTypeResult>();
            foreach (var dtype in dtypes)
            {
                bool emulated = machine.Emulated.Contains(dtype);
                log.WriteLine($"[{DTypeChoice.Name(dtype)}] loading and timing ({(emulated ? "emulated: one run" : $"{runs} runs per stage")})…");
                results.Add(StageTimer.Measure(models, files, stages, dtype, emulated, machine.PeakGflops(dtype), runs, size, log));
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            if (!tiny)
            {
                // Measured again after the stages: the limits use the best of both (see MachineProfile.Best).
                log.WriteLine("measuring peaks again…");
                machine = machine.Best(MachineProfile.Measure(dtypes, log), log);
            }
            double? psnr = null;
            if (results.FirstOrDefault(r => r.DType == ScalarType.Float32)?.Image is { } a && results.FirstOrDefault(r => r.DType == ScalarType.BFloat16)?.Image is { } b)
            {
                using var mse = (a - b).pow(2).mean();
                psnr = 10 * Math.Log10(1.0 / Math.Max(mse.item<float>(), 1e-12));
                log.WriteLine($"bf16 vs fp32 image ({size}×{size}, {StageTimer.PsnrSteps} DPM++ steps, CFG 7.5, same seed): PSNR {psnr:F2} dB");
            }
            foreach (var r in results) r.Image?.Dispose();
            if (asJson) ctx.Out.WriteLine(BenchReport.JsonText(BenchReport.Json(machine, results, psnr, size, runs)));
            else BenchReport.Table(ctx.Out, machine, results, psnr, size, runs);
            return EllaCli.ExitOk;
        }
        finally
        {
            if (ownDir) try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }
}
