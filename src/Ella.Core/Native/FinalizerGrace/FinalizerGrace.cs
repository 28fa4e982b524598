using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;

namespace Ella.Native;

/// <summary>
/// What .NET's finalizer frees of TorchSharp's Scalars and Tensors, libtorch frees 2 s later (see
/// ella_finalizer_grace.c beside this file for the race it closes: a temporary collected while libtorch still reads
/// it). The build compiles that file into libEllaFinalizerGrace.so next to libLibTorchSharp.so; <see cref="Install"/>
/// makes TorchSharp's P/Invokes resolve through it and tells it which thread is the finalizer's. Must run before
/// TorchSharp first frees anything, so <see cref="TorchRuntime.Initialize"/> calls it first.
/// <c>ELLA_FINALIZER_GRACE=off</c> leaves TorchSharp as it is.
/// </summary>
public static unsafe class FinalizerGrace
{
    public const string LibraryFileName = "libEllaFinalizerGrace.so";
    public const string EnvironmentVariable = "ELLA_FINALIZER_GRACE";
    const string TorchSharpLibrary = "LibTorchSharp";

    static readonly object Gate = new();
    static bool _attempted;
    static delegate* unmanaged<ulong*, ulong*, ulong*, ulong*, ulong*, int*, void> _stats;
    static delegate* unmanaged<void> _collect;
    static delegate* unmanaged<void> _registerFinalizerThread;

    /// <summary>Whether the grace period is in force and why, in words for <c>ella info</c>.</summary>
    public static string Status { get; private set; } = "not installed";

    /// <summary>True once TorchSharp's frees of Scalars and of finalized Tensors go through the grace queue.</summary>
    public static bool Active { get; private set; }

    /// <summary>Objects queued so far, freed from the queue so far, waiting now; tensors freed at once; the grace period.</summary>
    public readonly record struct Counts(ulong Deferred, ulong Freed, ulong Waiting, ulong TensorsFreedAtOnce, TimeSpan Grace, bool FinalizerThreadKnown);

    /// <summary>The queue's counters (null when not installed).</summary>
    public static Counts? Read()
    {
        if (_stats == null) return null;
        ulong deferred, freed, waiting, immediate, graceNs;
        int registered;
        _stats(&deferred, &freed, &waiting, &immediate, &graceNs, &registered);
        return new Counts(deferred, freed, waiting, immediate, TimeSpan.FromTicks((long)(graceNs / 100)), registered != 0);
    }

    /// <summary>Frees what has waited out its grace period.</summary>
    public static void Collect()
    {
        if (_collect != null) _collect();
    }

    /// <summary>Installs the resolver (once), registers the finalizer thread, and checks with one Scalar that frees are queued.</summary>
    public static void Install()
    {
        lock (Gate)
        {
            if (_attempted) return;
            _attempted = true;
            if (Environment.GetEnvironmentVariable(EnvironmentVariable) is "off" or "0")
            {
                Status = $"off ({EnvironmentVariable}={Environment.GetEnvironmentVariable(EnvironmentVariable)})";
                return;
            }
            if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            {
                Status = "off: built for Linux x64 only";
                return;
            }
            string? torchSharp = TorchRuntime.NativeLibraryPath();
            string? path = torchSharp == null ? null : Path.Combine(Path.GetDirectoryName(torchSharp)!, LibraryFileName);
            if (path == null || !File.Exists(path))
            {
                Status = $"off: {LibraryFileName} was not built next to libLibTorchSharp.so (the build needs a C compiler, cc)";
                return;
            }
            // TorchSharp loads its libraries its own way first; the grace library then finds libLibTorchSharp.so loaded.
            torch.InitializeDeviceType(DeviceType.CPU);
            if (!NativeLibrary.TryLoad(path, out var library))
            {
                Status = $"off: {path} could not be loaded";
                return;
            }
            var init = (delegate* unmanaged<int>)NativeLibrary.GetExport(library, "ella_grace_init");
            if (init() == 0)
            {
                Status = $"off: {path} did not find TorchSharp's own dispose functions in libLibTorchSharp.so";
                return;
            }
            try
            {
                NativeLibrary.SetDllImportResolver(typeof(torch).Assembly,
                    (name, _, _) => name == TorchSharpLibrary ? library : IntPtr.Zero);
            }
            catch (InvalidOperationException)
            {
                Status = "off: TorchSharp's native library resolver was already set by someone else";
                return;
            }
            _stats = (delegate* unmanaged<ulong*, ulong*, ulong*, ulong*, ulong*, int*, void>)NativeLibrary.GetExport(library, "ella_grace_stats");
            _collect = (delegate* unmanaged<void>)NativeLibrary.GetExport(library, "ella_grace_collect");
            _registerFinalizerThread = (delegate* unmanaged<void>)NativeLibrary.GetExport(library, "ella_grace_register_finalizer_thread");
            RegisterFinalizerThread();

            ulong before = Read()!.Value.Deferred;
            1.0.ToScalar().Dispose();
            var counts = Read()!.Value;
            Active = counts.Deferred == before + 1 && counts.FinalizerThreadKnown;
            Status = Active
                ? $"on: Scalars, and Tensors the finalizer frees, are released {counts.Grace.TotalSeconds:0.#} s later ({path})"
                : !counts.FinalizerThreadKnown
                    ? "off: the finalizer thread could not be identified"
                    : "off: TorchSharp freed a Scalar before the resolver was installed (call TorchRuntime.Initialize first)";
        }
    }

    /// <summary>Lets one object be finalized and has its finalizer tell the library which thread runs finalizers.</summary>
    static void RegisterFinalizerThread()
    {
        for (int attempt = 0; attempt < 10 && !(Read()?.FinalizerThreadKnown ?? false); attempt++)
        {
            DropProbe();
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void DropProbe() => _ = new FinalizerThreadProbe();

    sealed class FinalizerThreadProbe
    {
        ~FinalizerThreadProbe() => _registerFinalizerThread();
    }
}
