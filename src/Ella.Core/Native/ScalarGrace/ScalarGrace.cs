using System.Runtime.InteropServices;
using TorchSharp;

namespace Ella.Native;

/// <summary>
/// Keeps TorchSharp's Scalars alive for a grace period after .NET lets go of them (see ella_scalar_grace.c beside this
/// file for the race it closes: a finalizer freeing a number libtorch is about to read). The build compiles that file
/// into libEllaScalarGrace.so next to libLibTorchSharp.so; <see cref="Install"/> makes TorchSharp's P/Invokes resolve
/// through it. Must run before TorchSharp first frees a Scalar, so <see cref="TorchRuntime.Initialize"/> calls it first.
/// </summary>
public static unsafe class ScalarGrace
{
    public const string LibraryFileName = "libEllaScalarGrace.so";
    const string TorchSharpLibrary = "LibTorchSharp";

    static readonly object Gate = new();
    static IntPtr _library;
    static delegate* unmanaged<ulong*, ulong*, ulong*, ulong*, void> _stats;
    static delegate* unmanaged<void> _collect;

    /// <summary>Why the grace period is or is not in force, in words for <c>ella info</c>.</summary>
    public static string Status { get; private set; } = "not installed";

    /// <summary>True once TorchSharp's Scalar frees go through the grace queue.</summary>
    public static bool Active { get; private set; }

    public readonly record struct Counts(ulong Deferred, ulong Freed, ulong Held, TimeSpan Grace);

    /// <summary>Scalars queued so far, freed so far and held now (null when not installed).</summary>
    public static Counts? Read()
    {
        if (_stats == null) return null;
        ulong deferred, freed, held, graceNs;
        _stats(&deferred, &freed, &held, &graceNs);
        return new Counts(deferred, freed, held, TimeSpan.FromTicks((long)(graceNs / 100)));
    }

    /// <summary>Frees the held Scalars whose grace period has passed.</summary>
    public static void Collect()
    {
        if (_collect != null) _collect();
    }

    /// <summary>Installs the resolver (once); afterwards checks with one Scalar that frees really are queued.</summary>
    public static void Install()
    {
        lock (Gate)
        {
            if (_library != IntPtr.Zero || Status != "not installed") return;
            if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            {
                Status = "not needed on this platform build (no Linux x64)";
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
            _library = library;
            _stats = (delegate* unmanaged<ulong*, ulong*, ulong*, ulong*, void>)NativeLibrary.GetExport(library, "ella_scalar_grace_stats");
            _collect = (delegate* unmanaged<void>)NativeLibrary.GetExport(library, "ella_scalar_grace_collect");

            ulong before = Read()!.Value.Deferred;
            1.0.ToScalar().Dispose();
            Active = Read()!.Value.Deferred == before + 1;
            Status = Active
                ? $"on: Scalars freed by .NET are released {Read()!.Value.Grace.TotalSeconds:0.#} s later ({path})"
                : "off: TorchSharp freed a Scalar before the resolver was installed (call TorchRuntime.Initialize first)";
        }
    }
}
