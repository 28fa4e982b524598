using System.Diagnostics;
using System.Globalization;

namespace Ella.Hardware;

/// <summary>
/// How much CPU other processes use right now (Linux: /proc/stat minus this process's /proc/self/stat). A benchmark on a
/// 2-core machine that shares it with anything (a compiler, the `dotnet run` that started it, a training run) measures
/// that instead of itself: one busy core halves a parallel matmul.
/// </summary>
public static class CpuContention
{
    /// <summary>Cores' worth of CPU time that other processes used over <paramref name="window"/>; null where /proc is missing.</summary>
    public static double? OtherProcessesBusyCores(TimeSpan window)
    {
        if (ReadTicks() is not { } before) return null;
        var sw = Stopwatch.StartNew();
        Thread.Sleep(window);
        if (ReadTicks() is not { } after) return null;
        double seconds = sw.Elapsed.TotalSeconds;
        long others = (after.Busy - before.Busy) - (after.Self - before.Self);
        return Math.Max(0, others / TicksPerSecond / seconds);
    }

    /// <summary>
    /// Waits until other processes use less than <paramref name="quietCores"/> (checked every half second), at most
    /// <paramref name="maxWait"/>. Says on <paramref name="log"/> what it waits for, and warns when the machine stays busy.
    /// </summary>
    /// <returns>the last measured load of other processes, in cores (null where it cannot be measured)</returns>
    public static double? WaitUntilQuiet(TextWriter log, TimeSpan maxWait, double quietCores = 0.15)
    {
        var sw = Stopwatch.StartNew();
        bool said = false;
        while (true)
        {
            var busy = OtherProcessesBusyCores(TimeSpan.FromMilliseconds(500));
            if (busy is null || busy < quietCores) return busy;
            if (sw.Elapsed >= maxWait)
            {
                log.WriteLine($"warning: other processes keep {busy:F1} cores busy; the figures below will be low and noisy");
                return busy;
            }
            if (!said) log.WriteLine($"waiting up to {maxWait.TotalSeconds:F0} s for other processes to leave the CPU ({busy:F1} cores busy)…");
            said = true;
        }
    }

    // USER_HZ: 100 on every Linux architecture .NET runs on.
    const double TicksPerSecond = 100.0;

    /// <summary>All CPUs' non-idle ticks (user, nice, system, irq, softirq, steal) and this process's own (utime + stime).</summary>
    static (long Busy, long Self)? ReadTicks()
    {
        try
        {
            string? cpu = File.ReadLines("/proc/stat").FirstOrDefault(l => l.StartsWith("cpu ", StringComparison.Ordinal));
            if (cpu == null) return null;
            var f = cpu.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Select(v => long.Parse(v, CultureInfo.InvariantCulture)).ToArray();
            // user nice system idle iowait irq softirq steal …
            long busy = f[0] + f[1] + f[2] + f[5] + f[6] + (f.Length > 7 ? f[7] : 0);
            string stat = File.ReadAllText("/proc/self/stat");
            // Fields after the command name (which may hold spaces) start after the last ')'.
            var p = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            long self = long.Parse(p[11], CultureInfo.InvariantCulture) + long.Parse(p[12], CultureInfo.InvariantCulture);
            return (busy, self);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException) { return null; }
    }
}
