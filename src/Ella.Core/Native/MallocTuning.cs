using System.Runtime.InteropServices;

namespace Ella.Native;

/// <summary>
/// Keeps freed memory in the process for reuse (glibc's malloc, Linux). libtorch allocates every intermediate tensor
/// with malloc; glibc serves large blocks (above a threshold that grows to at most 32 MB: a 512² UNet's activations,
/// a feed-forward's hidden states) with a fresh mmap and unmaps them on free, so every such tensor page-faults all its memory in again, 4 KB at
/// a time. On a virtual machine a fault costs microseconds: measured on a 2-core AMD EPYC VM, a GEGLU gate over
/// [2, 4096, 2560] took 130 ms instead of 7.5 ms, a 3×3 convolution at 64² 92 ms instead of 49, and a 512² UNet
/// forward 10.4–15.6 s instead of 8.9–9.2. With mmap off (M_MMAP_MAX 0) and trimming off (M_TRIM_THRESHOLD at its
/// maximum), large blocks come from the heap and stay there, so the second denoising step reuses the first step's pages.
/// The process keeps its peak memory until it exits. <c>ELLA_MALLOC=system</c> keeps glibc's defaults.
/// <para>
/// mallopt only governs glibc's main arena fully: a thread with an arena of its own still maps blocks above 64 MB
/// afresh. So the <c>ella</c> command line starts over once, at its first line, with the same settings as glibc
/// tunables (<see cref="RestartWithTunables"/>: one arena, no mmap, no trimming, transparent huge pages for the heap),
/// which hold for every thread. A process hosting the library can set the same <see cref="Tunables"/> in
/// <c>GLIBC_TUNABLES</c> before it starts.
/// </para>
/// </summary>
public static class MallocTuning
{
    const int M_TRIM_THRESHOLD = -1;
    const int M_MMAP_MAX = -4;

    [DllImport("libc", EntryPoint = "mallopt", SetLastError = false)]
    static extern int Mallopt(int param, int value);

    /// <summary>What <see cref="Apply"/> did, for <c>ella info</c> and <c>ella bench</c>.</summary>
    public static string State { get; private set; } = "glibc defaults (not applied)";

    /// <summary>Whether freed memory is kept for reuse in this process.</summary>
    public static bool Applied { get; private set; }

    /// <summary>The glibc tunables that <see cref="RestartWithTunables"/> starts the command line with.</summary>
    public const string Tunables = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1099511627776:glibc.malloc.hugetlb=1";

    const string RestartedMarker = "ELLA_MALLOC_RESTARTED";

    /// <summary><c>ELLA_MALLOC</c>, lower-cased ("keep" when unset); "default" means "system".</summary>
    static string Setting() => Environment.GetEnvironmentVariable("ELLA_MALLOC")?.Trim().ToLowerInvariant() switch
    {
        null or "" => "keep",
        "default" => "system",
        var v => v,
    };

    /// <summary>Whether glibc was started with the tunables that keep freed memory (our restart, or the host's own).</summary>
    static bool StartedWithTunables(string? tunables) => tunables != null && tunables.Contains("glibc.malloc.mmap_max=0", StringComparison.Ordinal);

    [DllImport("libc", EntryPoint = "execve", SetLastError = true)]
    static extern int Execve(string path, string?[] argv, string?[] envp);

    /// <summary>
    /// Replaces this process (same PID, arguments and standard streams) by a fresh start of the same program with
    /// <see cref="Tunables"/> in <c>GLIBC_TUNABLES</c>, when they are not there yet; returns without doing anything on
    /// another OS, with <c>ELLA_MALLOC=system</c>, after a restart, or when execve fails. Call it before anything else.
    /// </summary>
    public static void RestartWithTunables()
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable(RestartedMarker) != null) return;
        if (Setting() == "system") return;
        string? current = Environment.GetEnvironmentVariable("GLIBC_TUNABLES");
        if (StartedWithTunables(current)) return;
        string[] argv;
        try
        {
            argv = File.ReadAllText("/proc/self/cmdline").TrimEnd('\0').Split('\0');
            if (!File.Exists("/proc/self/exe") || argv.Length == 0) return;
        }
        catch (IOException) { return; }
        catch (UnauthorizedAccessException) { return; }
        var env = new List<string?>();
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
            if ((string)e.Key != "GLIBC_TUNABLES") env.Add($"{e.Key}={e.Value}");
        env.Add($"GLIBC_TUNABLES={(string.IsNullOrEmpty(current) ? "" : current + ":")}{Tunables}");
        env.Add($"{RestartedMarker}=1");
        env.Add(null);
        try
        {
            Console.Out.Flush();
            Console.Error.Flush();
            Execve("/proc/self/exe", [.. argv, null], [.. env]); // returns only on failure
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    /// <summary>
    /// The page faults this thread takes to write a 64 MB libtorch tensor allocated right after an equal one was freed:
    /// about 0 when freed memory is reused, 16,384 (4 KB pages) when glibc maps it afresh; null off Linux.
    /// </summary>
    public static long? ReuseFaults()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/proc/thread-self/stat")) return null;
        long Touch()
        {
            using var t = TorchSharp.torch.empty([64L << 20], dtype: TorchSharp.torch.ScalarType.Byte);
            long before = ThreadMinorFaults();
            t.bytes.Fill(1);
            return ThreadMinorFaults() - before;
        }
        Touch();
        return Touch();
    }

    /// <summary>Minor page faults of the calling OS thread (field 10 of /proc/thread-self/stat).</summary>
    static long ThreadMinorFaults()
    {
        string stat = File.ReadAllText("/proc/thread-self/stat");
        return long.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[7], System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Applies the tuning once per process (called by <see cref="TorchRuntime.Initialize"/>); a no-op off Linux/glibc.</summary>
    public static void Apply()
    {
        if (Applied) return;
        if (!OperatingSystem.IsLinux()) { State = "not Linux: the system allocator's defaults"; return; }
        string setting = Setting();
        if (setting == "system")
        {
            State = "glibc defaults (ELLA_MALLOC=system)";
            return;
        }
        bool started = StartedWithTunables(Environment.GetEnvironmentVariable("GLIBC_TUNABLES"));
        if (setting != "keep")
            throw new EllaException($"ELLA_MALLOC: '{setting}' is not known (choose keep, the default, or system)");
        try
        {
            bool ok = Mallopt(M_MMAP_MAX, 0) == 1 & Mallopt(M_TRIM_THRESHOLD, int.MaxValue) == 1;
            Applied = ok;
            State = !ok ? "glibc refused mallopt: its defaults"
                : started ? "glibc, freed memory kept for reuse in every thread (GLIBC_TUNABLES: one arena, no mmap, no trim, huge pages; ELLA_MALLOC=system turns it off)"
                : "glibc, freed memory kept for reuse (mallopt: no mmap, no trim; threads with arenas of their own still map blocks over 64 MB; ELLA_MALLOC=system turns it off)";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            State = "no glibc mallopt: the system allocator's defaults";
        }
    }
}
