using System.Runtime.InteropServices;

namespace Ella.Hardware;

/// <summary>
/// <c>ELLA_CPU_ISA=avx2|avx512|native</c>: runs this process as if the CPU had at most that instruction set, to measure
/// or reproduce what an older CPU gets (an AVX2-only EPYC Zen 3, an AVX-512 Xeon without bf16) on a newer one. It caps
/// all three kernel libraries inside libtorch through their own switches, set in the native environment before any of
/// them dispatches: ATen's vectorised kernels (<c>ATEN_CPU_CAPABILITY</c>), oneDNN's convolutions and bf16 matmuls
/// (<c>ONEDNN_MAX_CPU_ISA</c>) and MKL's float32 matmuls (<c>MKL_ENABLE_INSTRUCTIONS</c>); and it hides the capped flags
/// from <see cref="CpuInfo.Current"/>, so <c>--dtype auto</c>, the MKL dispatch fix and <c>ella bench</c>'s emulated
/// marks decide as they would on such a CPU. It changes code paths, not the cores: an AVX2 path on a Zen 4 is the
/// closest stand-in for a Zen 3 this machine can give, not a Zen 3 measurement. A switch the user already set in the
/// environment is left as it is.
/// </summary>
public static class CpuIsaCap
{
    public const string Variable = "ELLA_CPU_ISA";

    /// <summary>The values <see cref="Variable"/> accepts.</summary>
    public static readonly string[] Names = ["native", "avx2", "avx512"];

    /// <summary>The cap in force: <c>avx2</c>, <c>avx512</c>, or null (the CPU's own instruction set).</summary>
    public static string? Current => Parse(Environment.GetEnvironmentVariable(Variable));

    /// <summary>Reads a value of <see cref="Variable"/>; unknown values stop with an error naming the variable.</summary>
    public static string? Parse(string? value) => value?.Trim().ToLowerInvariant() switch
    {
        null or "" or "native" => null,
        "avx2" => "avx2",
        "avx512" or "avx-512" => "avx512",
        var other => throw new EllaException($"{Variable}: '{other}' is not known (choose {string.Join(", ", Names)})"),
    };

    /// <summary>
    /// The flags a CPU keeps under <paramref name="cap"/>: avx2 drops every AVX-512, AMX and AVX-VNNI flag; avx512 drops
    /// the bf16 and fp16 ones (AVX-512 BF16 and FP16, AMX).
    /// </summary>
    public static IReadOnlySet<string> Mask(IReadOnlySet<string> flags, string? cap) => cap switch
    {
        null => flags,
        "avx2" => flags.Where(f => !f.StartsWith("avx512", StringComparison.Ordinal) && !f.StartsWith("amx", StringComparison.Ordinal)
                                   && !f.StartsWith("avx_vnni", StringComparison.Ordinal) && !f.StartsWith("avx10", StringComparison.Ordinal))
                       .ToHashSet(StringComparer.Ordinal),
        "avx512" => flags.Where(f => f is not ("avx512_bf16" or "avx512_fp16") && !f.StartsWith("amx", StringComparison.Ordinal)
                                     && !f.StartsWith("avx10", StringComparison.Ordinal))
                         .ToHashSet(StringComparer.Ordinal),
        _ => throw new ArgumentOutOfRangeException(nameof(cap), cap, "expected avx2, avx512 or null"),
    };

    /// <summary>The native switches for a cap: (variable, value) for ATen, oneDNN and MKL.</summary>
    public static IReadOnlyList<(string Name, string Value)> NativeSwitches(string? cap) => cap switch
    {
        null => [],
        "avx2" => [("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("MKL_ENABLE_INSTRUCTIONS", "AVX2")],
        "avx512" => [("ATEN_CPU_CAPABILITY", "avx512"), ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI"), ("MKL_ENABLE_INSTRUCTIONS", "AVX512")],
        _ => throw new ArgumentOutOfRangeException(nameof(cap), cap, "expected avx2, avx512 or null"),
    };

    /// <summary>What <see cref="Apply"/> did, for <c>ella info</c> and <c>ella bench</c>.</summary>
    public static string State { get; private set; } = "the CPU's own instruction set";

    static bool _applied;

    /// <summary>
    /// Sets the native switches of the cap in force (once). Must run before libtorch's first operator, its first oneDNN
    /// primitive and MKL's first call: each library reads its switch once. .NET's own environment is not the C
    /// library's on Linux, so the switches go through <c>setenv</c>.
    /// </summary>
    public static void Apply()
    {
        if (_applied) return;
        string? cap = Current;
        _applied = true;
        if (cap == null) return;
        if (!OperatingSystem.IsLinux()) { State = $"{Variable}={cap} is applied on Linux only: the CPU's own instruction set"; return; }
        var set = new List<string>();
        foreach (var (name, value) in NativeSwitches(cap))
        {
            string? existing = Marshal.PtrToStringAnsi(GetEnv(name));
            if (existing is { Length: > 0 }) { set.Add($"{name}={existing} (already set)"); continue; }
            if (SetEnv(name, value, 1) != 0) throw new EllaException($"{Variable}={cap}: could not set {name} (errno {Marshal.GetLastPInvokeError()})");
            set.Add($"{name}={value}");
        }
        State = $"capped at {cap} by {Variable} ({string.Join(", ", set)})";
    }

    [DllImport("libc", EntryPoint = "setenv", SetLastError = true)]
    static extern int SetEnv([MarshalAs(UnmanagedType.LPStr)] string name, [MarshalAs(UnmanagedType.LPStr)] string value, int overwrite);

    [DllImport("libc", EntryPoint = "getenv")]
    static extern IntPtr GetEnv([MarshalAs(UnmanagedType.LPStr)] string name);
}
