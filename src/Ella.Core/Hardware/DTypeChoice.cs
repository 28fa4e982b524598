using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Hardware;

/// <summary>A resolved <c>--dtype</c>: the dtype to use, whether <c>auto</c> picked it, and a warning to print (or null).</summary>
public sealed record DTypeResolution(ScalarType DType, bool Auto, string? Warning)
{
    public string Name => DTypeChoice.Name(DType);
}

/// <summary>
/// The one place that turns a <c>--dtype</c> value into a dtype, for every command (generate, compare, dpg generate,
/// bench, train, serve). <c>auto</c> (the default) picks bf16 where bf16 has native kernels (a CPU with avx512_bf16 or
/// amx_bf16, or CUDA) and fp32 everywhere else: without native bf16, libtorch converts every bf16 operand to fp32 and
/// back inside scalar fallback loops, which is many times slower than plain fp32 (0.3–1.3 GFLOP/s bf16 matmul against
/// ~100 GFLOP/s fp32 on a 2-core AVX2 EPYC). An explicit bf16 on such a CPU is honoured, with one warning saying why it
/// will be slow.
/// </summary>
public static class DTypeChoice
{
    /// <summary>The values <c>--dtype</c> accepts.</summary>
    public static readonly string[] Names = ["auto", "fp32", "bf16", "fp16"];

    /// <summary>Resolves a <c>--dtype</c> value for a device (null = CPU) and CPU (null = this machine's).</summary>
    public static DTypeResolution Resolve(string name, Device? device = null, CpuInfo? cpu = null)
    {
        bool onCpu = device is null || device.type == DeviceType.CPU;
        if (name.Trim().Equals("auto", StringComparison.OrdinalIgnoreCase))
            return new DTypeResolution(Auto(device, cpu), true, null);
        var dtype = Parse(name);
        string? warning = null;
        if (dtype == ScalarType.BFloat16 && onCpu)
        {
            cpu ??= CpuInfo.Current;
            if (!cpu.HasNativeBf16)
                warning = $"--dtype bf16: this CPU ({cpu.ModelName}) has no native bf16 (neither avx512_bf16 nor amx_bf16), so " +
                          "libtorch emulates bf16 in slow fallback loops: expect it to run many times slower than fp32 " +
                          "(--dtype auto picks fp32 here)";
        }
        return new DTypeResolution(dtype, false, warning);
    }

    /// <summary>What <c>auto</c> picks: bf16 on CUDA or on a CPU with native bf16, else fp32.</summary>
    public static ScalarType Auto(Device? device = null, CpuInfo? cpu = null)
    {
        if (device is not null && device.type == DeviceType.CUDA) return ScalarType.BFloat16;
        return (cpu ?? CpuInfo.Current).HasNativeBf16 ? ScalarType.BFloat16 : ScalarType.Float32;
    }

    /// <summary>Whether a dtype has native (fast) kernels on this CPU: fp32 always, bf16 with avx512_bf16/amx_bf16.</summary>
    public static bool IsNativeOnCpu(ScalarType dtype, CpuInfo? cpu = null) => dtype switch
    {
        ScalarType.Float32 or ScalarType.Float64 => true,
        ScalarType.BFloat16 => (cpu ?? CpuInfo.Current).HasNativeBf16,
        ScalarType.Float16 => (cpu ?? CpuInfo.Current).Has("amx_fp16"),
        _ => false,
    };

    /// <summary>A concrete dtype name (not <c>auto</c>).</summary>
    public static ScalarType Parse(string name) => name.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" or "f32" => ScalarType.Float32,
        "bf16" or "bfloat16" => ScalarType.BFloat16,
        "fp16" or "float16" or "f16" => ScalarType.Float16,
        _ => throw new EllaException($"unknown dtype '{name}' (auto, fp32, bf16; fp16 on CUDA only)"),
    };

    public static string Name(ScalarType t) => t switch
    {
        ScalarType.Float32 => "fp32",
        ScalarType.BFloat16 => "bf16",
        ScalarType.Float16 => "fp16",
        _ => t.ToString(),
    };
}
