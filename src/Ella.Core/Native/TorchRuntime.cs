using TorchSharp;

namespace Ella.Native;

/// <summary>
/// Process-wide TorchSharp set-up. <see cref="Initialize"/> must run before the first tensor is created; every entry
/// point (CLI, pipelines, tests) calls it. It makes sure libLibTorchSharp.so loads on older libstdc++ (the build already
/// patches its output copy; this is the safety net for hosts that copied the library some other way), lets libtorch
/// free what .NET's finalizer releases only after a grace period (<see cref="FinalizerGrace"/>), keeps freed
/// memory for reuse (<see cref="MallocTuning"/>), applies <c>ELLA_CPU_ISA</c> (<see cref="Hardware.CpuIsaCap"/>), sets threads, turns NNPACK off (<see cref="NnpackSwitch"/>), and lets
/// MKL use AVX-512 on AMD CPUs (<see cref="MklCpuDispatch"/>).
/// </summary>
public static class TorchRuntime
{
    static readonly object Gate = new();
    static bool _initialized;

    /// <summary>Where the process will load libLibTorchSharp.so from, if it is a file next to TorchSharp.dll.</summary>
    public static string? NativeLibraryPath()
    {
        string dir = Path.GetDirectoryName(typeof(torch).Assembly.Location) ?? AppContext.BaseDirectory;
        foreach (var candidate in new[]
                 {
                     Path.Combine(dir, "runtimes", "linux-x64", "native", GlibcxxCompat.LibraryFileName),
                     Path.Combine(dir, GlibcxxCompat.LibraryFileName),
                 })
            if (File.Exists(candidate)) return candidate;
        return null;
    }

    /// <param name="threads">
    /// Intra-op threads. null: the first initialisation sets one per physical core (<see cref="Hardware.CpuInfo.DefaultThreads"/>;
    /// libtorch's own default counts logical CPUs on some builds), later calls keep what is set.
    /// </param>
    public static void Initialize(int? threads = null)
    {
        lock (Gate)
        {
            if (!_initialized)
            {
                Hardware.CpuIsaCap.Apply(); // before libtorch's first operator: its libraries read their switches once
                EnsureNativeLibraryLoads();
                FinalizerGrace.Install();
                MallocTuning.Apply();
                _initialized = true;
                if (threads is not > 0) torch.set_num_threads(Hardware.CpuInfo.Current.DefaultThreads);
                NnpackSwitch.Disable();
            }
            if (threads is > 0) torch.set_num_threads(threads.Value);
            // libtorch is loaded now (set_num_threads above), and no matmul has run yet.
            MklCpuDispatch.Apply();
        }
    }

    static void EnsureNativeLibraryLoads()
    {
        if (!OperatingSystem.IsLinux()) return;
        string? lib = NativeLibraryPath();
        if (lib == null) return;
        try
        {
            GlibcxxCompat.Apply(lib, GlibcxxCompat.FindSystemLibstdcxx());
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            throw new EllaException(
                $"{lib} needs {GlibcxxCompat.Version}, which this system's libstdc++ lacks, and the copy could not be " +
                $"patched ({e.Message}). Rebuild the application (the build patches its own copy) or make that file writable.", e);
        }
    }
}
