using System.Runtime.InteropServices;
using TorchSharp;

namespace Ella.Hardware;

/// <summary>
/// What the loaded libtorch says about its own build: PyTorch's <c>torch.__config__.show()</c> and
/// <c>torch.__config__.parallel_info()</c>, the ATen CPU capability its kernels dispatch to (e.g. AVX512, AVX2), and
/// the oneDNN (MKL-DNN) and MKL versions. TorchSharp does not expose these, so they are read from libtorch_cpu's
/// exported C++ functions (<c>at::show_config()</c> etc., each returning a <c>std::string</c>). Anything that cannot be
/// read is null.
/// </summary>
public sealed record LibTorchBuild(string? Config, string? ParallelInfo, string? CpuCapability, string? MkldnnVersion, string? MklVersion, string? OpenMpVersion)
{
    // Itanium C++ ABI names (libstdc++'s cxx11 std::string).
    const string ShowConfig = "_ZN2at11show_configB5cxx11Ev";
    const string GetParallelInfo = "_ZN2at17get_parallel_infoB5cxx11Ev";
    const string GetCpuCapability = "_ZN2at18get_cpu_capabilityB5cxx11Ev";
    const string GetMkldnnVersion = "_ZN2at18get_mkldnn_versionB5cxx11Ev";
    const string GetMklVersion = "_ZN2at15get_mkl_versionB5cxx11Ev";
    const string GetOpenMpVersion = "_ZN2at18get_openmp_versionB5cxx11Ev";

    /// <summary>Reads the build information of the libtorch this process uses (null fields when not available).</summary>
    public static LibTorchBuild Read()
    {
        Native.TorchRuntime.Initialize();
        IntPtr lib = Native.LibTorchCpu.Handle;
        string? Call(string symbol) => lib != IntPtr.Zero ? CallStringFunction(lib, symbol) : null;
        return new LibTorchBuild(Call(ShowConfig), Call(GetParallelInfo), Call(GetCpuCapability), Call(GetMkldnnVersion), Call(GetMklVersion), Call(GetOpenMpVersion));
    }

    /// <summary>A line of <see cref="Config"/> that starts with <paramref name="prefix"/> (trimmed), e.g. "- LAPACK is enabled".</summary>
    public IEnumerable<string> ConfigLines(Func<string, bool> predicate) =>
        (Config ?? "").Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && predicate(l));

    /// <summary>The BLAS library named in the build settings (e.g. MKL, OpenBLAS), or null.</summary>
    public string? Blas => ConfigLines(l => l.StartsWith("BLAS_INFO=", StringComparison.Ordinal) || l.Contains("BLAS_INFO=", StringComparison.Ordinal))
        .Select(l => l[(l.IndexOf("BLAS_INFO=", StringComparison.Ordinal) + 10)..].Split(',')[0].Trim()).FirstOrDefault()
        ?? ConfigLines(l => l.Contains("BLAS_INFO", StringComparison.Ordinal)).FirstOrDefault();

    delegate void StringReturning(IntPtr result);

    /// <summary>
    /// Calls <c>std::string f()</c>. The x86-64 System V ABI returns a non-trivial class through a hidden pointer to
    /// caller-provided storage (passed like a first argument), so the call is <c>void f(std::string* out)</c>. libstdc++'s
    /// std::string is 32 bytes: data pointer, length, 16 bytes of inline buffer/capacity. The heap buffer of a long
    /// string is left to the process (a few KB, read once).
    /// </summary>
    static string? CallStringFunction(IntPtr lib, string symbol)
    {
        if (!NativeLibrary.TryGetExport(lib, symbol, out var fn)) return null;
        var storage = Marshal.AllocHGlobal(64);
        try
        {
            var call = Marshal.GetDelegateForFunctionPointer<StringReturning>(fn);
            call(storage);
            var data = Marshal.ReadIntPtr(storage);
            long length = Marshal.ReadInt64(storage, 8);
            if (data == IntPtr.Zero || length < 0 || length > 1 << 20) return null;
            return Marshal.PtrToStringUTF8(data, (int)length);
        }
        finally
        {
            Marshal.FreeHGlobal(storage);
        }
    }
}
