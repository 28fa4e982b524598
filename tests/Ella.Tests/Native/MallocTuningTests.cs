using System.Diagnostics;
using System.Text.Json;

namespace Ella.Tests.Native;

/// <summary>The command line restarts itself with glibc tuned, and then reuses freed memory (checked in a real process).</summary>
public class MallocTuningTests
{
    static JsonElement InfoJson(string? mallocSetting)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, "ella.dll");
        Assert.True(File.Exists(dll), $"{dll} is built next to the tests");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { dll, "info", "--json" }) start.ArgumentList.Add(a);
        start.Environment.Remove("GLIBC_TUNABLES");
        start.Environment.Remove("ELLA_MALLOC_RESTARTED");
        if (mallocSetting != null) start.Environment["ELLA_MALLOC"] = mallocSetting;
        else start.Environment.Remove("ELLA_MALLOC");
        using var p = Process.Start(start)!;
        string stdout = p.StandardOutput.ReadToEnd(), stderr = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"ella info exited {p.ExitCode}: {stderr}");
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    [Fact]
    public void The_command_line_reuses_freed_memory_and_ELLA_MALLOC_system_keeps_glibc_defaults()
    {
        if (!OperatingSystem.IsLinux()) return;
        var tuned = InfoJson(null);
        Assert.Contains("every thread", tuned.GetProperty("malloc").GetString());
        long reuse = tuned.GetProperty("malloc_reuse_faults").GetInt64();
        var plain = InfoJson("system");
        Assert.Contains("ELLA_MALLOC=system", plain.GetProperty("malloc").GetString());
        long fresh = plain.GetProperty("malloc_reuse_faults").GetInt64();
        // 64 MB is 16,384 pages of 4 KB: glibc maps a block that large afresh each time; the tuned heap reuses it.
        Assert.True(fresh >= 8_000, $"glibc's defaults: {fresh} faults (expected a fresh mapping)");
        Assert.True(reuse < 1_000, $"tuned: the freed 64 MB came back with {reuse} page faults");
    }
}
