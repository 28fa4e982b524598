using Ella.Benchmarks;
using Ella.Hardware;
using Ella.Modules.Common;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Cli.Commands.Bench;

/// <summary>The machine a bench ran on: its CPU, threads, and the measured matmul and convolution peaks per dtype.</summary>
public sealed class MachineProfile
{
    public required CpuInfo Cpu { get; init; }
    public required int Threads { get; init; }
    public required ScalarType AutoDType { get; init; }
    public required Dictionary<ScalarType, PeakMeasurement> Matmul { get; init; }
    public required Dictionary<ScalarType, PeakMeasurement> Conv { get; init; }
    /// <summary>dtypes without native kernels here: decided from the flags, or from a measured peak far below fp32's.</summary>
    public required HashSet<ScalarType> Emulated { get; init; }
    /// <summary>float32 inference linear rate per kernel (MKL's sgemm, oneDNN's 1×1 convolution), and the one in use.</summary>
    public required Dictionary<LinearKernelKind, PeakMeasurement> Linear { get; init; }
    public required LinearKernelKind LinearKernelInUse { get; init; }

    /// <summary>Cores' worth of CPU that other processes used just before the peaks were measured (null: unknown).</summary>
    public double? OtherProcessesBusyCores { get; init; }

    /// <summary>
    /// The better of two measurements of one machine, peak by peak (a bench measures at its start and again at its end:
    /// a machine that was busy at one moment is not mistaken for a slow one). Logs the peaks that differ by over 10%.
    /// </summary>
    public MachineProfile Best(MachineProfile later, TextWriter log)
    {
        Dictionary<TKey, PeakMeasurement> Max<TKey>(Dictionary<TKey, PeakMeasurement> a, Dictionary<TKey, PeakMeasurement> b, string what, Func<TKey, string> name) where TKey : notnull =>
            a.ToDictionary(kv => kv.Key, kv =>
            {
                if (!b.TryGetValue(kv.Key, out var other)) return kv.Value;
                double hi = Math.Max(kv.Value.Gflops, other.Gflops), lo = Math.Min(kv.Value.Gflops, other.Gflops);
                if (hi > 1.1 * lo)
                    log.WriteLine($"  {name(kv.Key)} {what}: {kv.Value.Gflops:F1} GFLOP/s at the start, {other.Gflops:F1} at the end; the better one counts (the machine was busier at one moment)");
                return other.Gflops > kv.Value.Gflops ? other : kv.Value;
            });
        return new MachineProfile
        {
            Cpu = Cpu, Threads = Threads, AutoDType = AutoDType, Emulated = Emulated, LinearKernelInUse = LinearKernelInUse,
            OtherProcessesBusyCores = OtherProcessesBusyCores,
            Matmul = Max(Matmul, later.Matmul, "matmul", DTypeChoice.Name),
            Conv = Max(Conv, later.Conv, "conv", DTypeChoice.Name),
            Linear = Max(Linear, later.Linear, "linear", LinearKernel.Name),
        };
    }

    /// <summary>The best measured rate in a dtype (the higher of matmul and convolution), GFLOP/s.</summary>
    public double PeakGflops(ScalarType dtype) => Math.Max(Matmul[dtype].Gflops, Conv[dtype].Gflops);

    /// <summary>
    /// Measures fp32 and bf16 (and any other dtype asked for); an emulated dtype gets one small run. <paramref name="quick"/>:
    /// small problems (512² matmul, 64-channel 32² convolution) for a check of the command, not a figure to quote.
    /// </summary>
    public static MachineProfile Measure(IEnumerable<ScalarType> dtypes, TextWriter log, bool quick = false, CpuInfo? cpu = null)
    {
        cpu ??= CpuInfo.Current;
        // Other processes on the CPU (the `dotnet run` that started this, a build, a training run) would be measured
        // instead of the machine: wait for them a little, and say so when they stay.
        double? busy = quick ? null : CpuContention.WaitUntilQuiet(log, TimeSpan.FromSeconds(20));
        var all = new[] { ScalarType.Float32, ScalarType.BFloat16 }.Concat(dtypes).Distinct().ToList();
        var matmul = new Dictionary<ScalarType, PeakMeasurement>();
        var conv = new Dictionary<ScalarType, PeakMeasurement>();
        var emulated = new HashSet<ScalarType>();
        foreach (var dtype in all)
        {
            bool byFlags = !DTypeChoice.IsNativeOnCpu(dtype, cpu);
            matmul[dtype] = quick ? PeakThroughput.Matmul(dtype, byFlags, n: 512, minSeconds: 0.05) : PeakThroughput.Matmul(dtype, byFlags);
            conv[dtype] = quick ? PeakThroughput.Conv3x3(dtype, byFlags, channels: 64, size: 32, batch: 1, minSeconds: 0.05) : PeakThroughput.Conv3x3(dtype, byFlags);
            // Native by the flags but far slower than fp32 in practice (an old libtorch, a hypervisor hiding the
            // instructions from oneDNN): treat it as emulated too, so the stages run once.
            bool byMeasure = dtype != ScalarType.Float32 && matmul.ContainsKey(ScalarType.Float32)
                && Math.Max(matmul[dtype].Gflops, conv[dtype].Gflops) < 0.25 * Math.Max(matmul[ScalarType.Float32].Gflops, conv[ScalarType.Float32].Gflops);
            if (byFlags || byMeasure) emulated.Add(dtype);
            log.WriteLine($"  peak {DTypeChoice.Name(dtype)}: matmul {matmul[dtype].Gflops:F1} GFLOP/s ({matmul[dtype].Problem}), " +
                          $"conv {conv[dtype].Gflops:F1} GFLOP/s ({conv[dtype].Problem}){(emulated.Contains(dtype) ? ", emulated (no native kernels)" : "")}");
        }
        var linear = new Dictionary<LinearKernelKind, PeakMeasurement>();
        foreach (var kind in new[] { LinearKernelKind.Blas, LinearKernelKind.OneDnnConv })
            linear[kind] = quick ? PeakThroughput.Linear(kind, rows: 512, inFeatures: 64, outFeatures: 256, minSeconds: 0.05) : PeakThroughput.Linear(kind);
        log.WriteLine($"  {LinearSummary(linear, LinearKernel.Current)}");
        return new MachineProfile
        {
            Linear = linear, LinearKernelInUse = LinearKernel.Current,
            Cpu = cpu, Threads = torch.get_num_threads(), AutoDType = DTypeChoice.Auto(CPU, cpu),
            Matmul = matmul, Conv = conv, Emulated = emulated, OtherProcessesBusyCores = busy,
        };
    }

    /// <summary>"fp32 linear (problem): blas X GFLOP/s, onednn Y GFLOP/s; in use: …".</summary>
    public string LinearSummary() => LinearSummary(Linear, LinearKernelInUse);

    static string LinearSummary(Dictionary<LinearKernelKind, PeakMeasurement> linear, LinearKernelKind inUse) =>
        $"fp32 linear ({linear[LinearKernelKind.Blas].Problem}): blas {linear[LinearKernelKind.Blas].Gflops:F1} GFLOP/s, " +
        $"onednn {linear[LinearKernelKind.OneDnnConv].Gflops:F1} GFLOP/s; in use: {LinearKernel.Name(inUse)}";

    /// <summary>The <c>machine</c> object of <c>ella bench --json</c>.</summary>
    public Dictionary<string, object?> ToJson() => new()
    {
        ["cpu"] = Cpu.ModelName,
        ["vendor"] = Cpu.Vendor,
        ["flags"] = Cpu.PresentKeyFlags,
        ["isa_cap"] = Cpu.IsaCap,
        ["physical_cores"] = Cpu.PhysicalCores,
        ["logical_cpus"] = Cpu.LogicalCpus,
        ["threads"] = Threads,
        ["matmul_gflops"] = Matmul.ToDictionary(kv => DTypeChoice.Name(kv.Key), kv => (object?)Math.Round(kv.Value.Gflops, 2)),
        ["conv_gflops"] = Conv.ToDictionary(kv => DTypeChoice.Name(kv.Key), kv => (object?)Math.Round(kv.Value.Gflops, 2)),
        ["linear_gflops"] = Linear.ToDictionary(kv => LinearKernel.Name(kv.Key), kv => (object?)Math.Round(kv.Value.Gflops, 2)),
        ["linear_kernel"] = LinearKernel.Name(LinearKernelInUse),
        ["malloc_keeps_freed_memory"] = Native.MallocTuning.Applied,
        ["mkl_intel_paths_on_amd"] = Native.MklCpuDispatch.Applied,
        ["mkl_avx512_on_amd"] = Native.MklCpuDispatch.Applied && Cpu.Has("avx512f"),
        ["emulated_dtypes"] = Emulated.Select(DTypeChoice.Name).ToList(),
        ["other_processes_busy_cores"] = OtherProcessesBusyCores is { } b ? Math.Round(b, 2) : null,
    };
}
