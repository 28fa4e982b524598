using Ella.Modules.Common;
using System.CommandLine;
using System.Reflection;
using System.Text.Json;
using Ella.Hardware;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Cli.Commands;

/// <summary>
/// <c>ella info</c>: the EllaSharp, TorchSharp and libtorch versions, the CPU (vendor, model, the flags that matter,
/// physical cores), the threads and dtype a command would use by default, and the BLAS / oneDNN builds libtorch reports
/// (its <c>torch.__config__.show()</c>, read from libtorch itself).
/// </summary>
public static class InfoCommand
{
    public static Command Create(CliContext ctx)
    {
        var threads = new Option<int?>("--threads") { Description = "Intra-op threads to report (default: one per physical core)" };
        var config = new Option<bool>("--config") { Description = "Also print libtorch's full build configuration and parallel info" };
        var json = new Option<bool>("--json") { Description = "Print the information as JSON" };
        var command = new Command("info", "Show versions, the CPU and its flags, threads, the dtype --dtype auto picks, and libtorch's BLAS / oneDNN builds")
            { threads, config, json };
        command.SetAction(p => Run(ctx, p.GetValue(threads), p.GetValue(config), p.GetValue(json)));
        return command;
    }

    static int Run(CliContext ctx, int? threads, bool showConfig, bool asJson)
    {
        if (threads is <= 0) throw new EllaException($"--threads must be at least 1, got {threads}");
        Native.TorchRuntime.Initialize(threads);
        var cpu = CpuInfo.Current;
        var build = LibTorchBuild.Read();
        var auto = DTypeChoice.Auto(CPU, cpu);
        string autoWhy = cpu.HasNativeBf16
            ? $"the CPU has native bf16 ({string.Join(", ", new[] { "avx512_bf16", "amx_bf16" }.Where(cpu.Has))})"
            : "the CPU has no native bf16 (avx512_bf16 or amx_bf16): bf16 would be emulated, far slower than fp32";
        string ellaVersion = typeof(InfoCommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
                             ?? typeof(InfoCommand).Assembly.GetName().Version?.ToString() ?? "unknown";
        string torchSharpVersion = typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
                                   ?? typeof(torch).Assembly.GetName().Version?.ToString() ?? "unknown";
        string libtorchVersion = LibTorchVersion(build) ?? "unknown";
        bool cuda = torch.cuda.is_available();

        if (asJson)
        {
            var doc = new Dictionary<string, object?>
            {
                ["version"] = ellaVersion,
                ["torchsharp_version"] = torchSharpVersion,
                ["libtorch_version"] = libtorchVersion,
                ["cpu"] = new Dictionary<string, object?>
                {
                    ["model"] = cpu.ModelName, ["vendor"] = cpu.Vendor,
                    ["flags"] = CpuInfo.KeyFlags.ToDictionary(f => f, f => (object?)cpu.Has(f)),
                    ["physical_cores"] = cpu.PhysicalCores, ["logical_cpus"] = cpu.LogicalCpus,
                },
                ["threads"] = torch.get_num_threads(),
                ["auto_dtype"] = DTypeChoice.Name(auto),
                ["linear_kernel"] = LinearKernel.Name(LinearKernel.Current),
                ["malloc"] = Native.MallocTuning.State,
                ["mkl_dispatch"] = Native.MklCpuDispatch.State,
                ["isa_cap"] = cpu.IsaCap,
                ["isa_cap_state"] = CpuIsaCap.State,
                ["finalizer_grace"] = Native.FinalizerGrace.Status,
                ["malloc_reuse_faults"] = Native.MallocTuning.ReuseFaults(),
                ["cuda_available"] = cuda,
                ["cpu_capability"] = build.CpuCapability,
                ["blas"] = build.Blas,
                ["mkldnn_version"] = build.MkldnnVersion,
                ["mkl_version"] = build.MklVersion,
                ["openmp_version"] = build.OpenMpVersion,
            };
            if (showConfig)
            {
                doc["config"] = build.Config;
                doc["parallel_info"] = build.ParallelInfo;
            }
            ctx.Out.WriteLine(JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
            return EllaCli.ExitOk;
        }

        var o = ctx.Out;
        o.WriteLine($"EllaSharp {ellaVersion}; TorchSharp {torchSharpVersion}; libtorch {libtorchVersion}");
        o.WriteLine($"CPU: {cpu.ModelName} ({cpu.Vendor}), {cpu.PhysicalCores} physical cores, {cpu.LogicalCpus} logical CPUs");
        o.WriteLine($"flags: {string.Join("  ", CpuInfo.KeyFlags.Select(f => $"{f} {(cpu.Has(f) ? "yes" : "no")}"))}");
        o.WriteLine($"threads: {torch.get_num_threads()} (default: one per physical core; --threads N overrides)");
        o.WriteLine($"dtype auto: {DTypeChoice.Name(auto)} ({autoWhy}){(cuda ? "; bf16 on CUDA" : "")}");
        o.WriteLine($"fp32 inference linears: {LinearKernel.Name(LinearKernel.Current)} " +
                    $"({(LinearKernel.Current == LinearKernelKind.OneDnnConv ? "oneDNN 1×1 convolutions: MKL's sgemm runs its AVX2 path on AMD CPUs with AVX-512" : "libtorch's MKL sgemm")}; ELLA_LINEAR_KERNEL=blas|onednn overrides)");
        o.WriteLine($"MKL dispatch: {Native.MklCpuDispatch.State}");
        o.WriteLine($"instruction set: {CpuIsaCap.State}{(cpu.IsaCap == null ? $" ({CpuIsaCap.Variable}=avx2|avx512 runs as an older CPU would)" : "")}");
        o.WriteLine($"finalizer grace: {Native.FinalizerGrace.Status}");
        o.WriteLine($"malloc: {Native.MallocTuning.State}; a freed 64 MB tensor came back with {Native.MallocTuning.ReuseFaults()?.ToString() ?? "?"} page faults");
        o.WriteLine($"CUDA: {(cuda ? $"available ({torch.cuda.device_count()} device(s))" : "not available")}");
        o.WriteLine($"ATen CPU kernels: {build.CpuCapability ?? "unknown"}");
        o.WriteLine($"BLAS: {build.Blas ?? "not reported"}");
        o.WriteLine($"oneDNN (MKL-DNN): {build.MkldnnVersion ?? "not reported"}");
        o.WriteLine($"MKL: {build.MklVersion ?? "not reported"}");
        o.WriteLine($"OpenMP: {build.OpenMpVersion ?? "not reported"}");
        if (build.Config == null)
            o.WriteLine("(libtorch's build configuration could not be read: TorchSharp does not expose torch.__config__, and libtorch_cpu's at::show_config was not found)");
        if (showConfig)
        {
            o.WriteLine();
            o.WriteLine("libtorch build configuration (torch.__config__.show()):");
            o.WriteLine(build.Config?.TrimEnd() ?? "not available");
            o.WriteLine();
            o.WriteLine("parallel info (torch.__config__.parallel_info()):");
            o.WriteLine(build.ParallelInfo?.TrimEnd() ?? "not available");
        }
        return EllaCli.ExitOk;
    }

    /// <summary>The "PyTorch built with" / "TORCH_VERSION=" entry of the build configuration, else TorchSharp's own report.</summary>
    static string? LibTorchVersion(LibTorchBuild build)
    {
        var line = build.ConfigLines(l => l.Contains("TORCH_VERSION=", StringComparison.Ordinal)).FirstOrDefault();
        if (line != null)
        {
            int i = line.IndexOf("TORCH_VERSION=", StringComparison.Ordinal) + "TORCH_VERSION=".Length;
            return line[i..].Split(',')[0].Trim();
        }
        try { return torch.__version__; }
        catch (Exception) { return null; }
    }
}
