using System.Runtime.InteropServices;
using TorchSharp;

namespace Ella.Native;

/// <summary>
/// A handle on the libtorch_cpu.so this process uses, for the few libtorch functions TorchSharp does not expose (read
/// through their exported C++ names). Zero where it cannot be had (not Linux x64, library not found).
/// </summary>
internal static class LibTorchCpu
{
    static readonly Lazy<IntPtr> Lib = new(Load);

    public static IntPtr Handle => Lib.Value;

    /// <summary>The address of an exported function, or zero.</summary>
    public static IntPtr Export(string symbol) =>
        Handle != IntPtr.Zero && NativeLibrary.TryGetExport(Handle, symbol, out var fn) ? fn : IntPtr.Zero;

    static IntPtr Load()
    {
        if (!OperatingSystem.IsLinux() || !Environment.Is64BitProcess || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return IntPtr.Zero;
        // TorchSharp loads libtorch with its first call; the library is then found by name or next to the glue library.
        torch.InitializeDeviceType(DeviceType.CPU);
        if (NativeLibrary.TryLoad("libtorch_cpu.so", out var lib)) return lib;
        string? glue = TorchRuntime.NativeLibraryPath();
        string? candidate = glue == null ? null : Path.Combine(Path.GetDirectoryName(glue)!, "libtorch_cpu.so");
        return candidate != null && File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out lib) ? lib : IntPtr.Zero;
    }
}
