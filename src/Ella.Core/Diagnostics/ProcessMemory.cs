namespace Ella.Diagnostics;

/// <summary>Resident memory of this process, from /proc (Linux); zeros elsewhere.</summary>
public static class ProcessMemory
{
    /// <summary>Current resident set size in MiB.</summary>
    public static double RssMb() => ReadStatusKb("VmRSS:") / 1024.0;

    /// <summary>Peak resident set size (since start or the last <see cref="ResetPeak"/>) in MiB.</summary>
    public static double PeakRssMb() => ReadStatusKb("VmHWM:") / 1024.0;

    /// <summary>Resets the peak to the current RSS (writes 5 to /proc/self/clear_refs). False where unsupported.</summary>
    public static bool ResetPeak()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>MemAvailable of the machine in MiB (0 when unknown).</summary>
    public static double AvailableMb()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    return long.Parse(line["MemAvailable:".Length..].Trim().Split(' ')[0]) / 1024.0;
        }
        catch (IOException) { }
        return 0;
    }

    static long ReadStatusKb(string key)
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith(key, StringComparison.Ordinal))
                    return long.Parse(line[key.Length..].Trim().Split(' ')[0]);
        }
        catch (IOException) { }
        return 0;
    }
}
