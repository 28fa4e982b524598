using System.Diagnostics;
using Ella.Native;

namespace Ella.Tests.Native;

/// <summary>NNPACK is off once TorchSharp is set up, so small float32 convolutions print nothing to stderr.</summary>
public class NnpackSwitchTests
{
    [Fact]
    public void Nnpack_is_off_after_initialisation()
    {
        if (!OperatingSystem.IsLinux()) return;
        TorchRuntime.Initialize();
        Assert.False(NnpackSwitch.Enabled, "libtorch's user NNPACK switch is still on");
    }

    /// <summary>
    /// A float32 generation with the world model: its VAE's first convolutions see one 16×16 image, the case where
    /// libtorch asks NNPACK, which on CPUs it does not support printed "Could not initialize NNPACK!" to stderr (checked
    /// in a real process: libtorch writes to the process's own stderr).
    /// </summary>
    [Fact]
    public async Task A_float32_generation_prints_no_native_warning()
    {
        if (!OperatingSystem.IsLinux()) return;
        string dll = Path.Combine(AppContext.BaseDirectory, "ella.dll");
        string png = Path.Combine(Path.GetTempPath(), $"ella-nnpack-{Guid.NewGuid():N}.png");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { dll, "generate", "--prompt", "a red circle", "--dtype", "fp32", "--steps", "1", "--seed", "1", "-o", png })
            start.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(start)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            string stderr = await p.StandardError.ReadToEndAsync();
            await p.WaitForExitAsync();
            Assert.True(p.ExitCode == 0, $"ella generate exited {p.ExitCode}: {stderr}");
            Assert.DoesNotContain("NNPACK", stderr + await stdout);
            Assert.DoesNotContain("[W", stderr);
        }
        finally { File.Delete(png); }
    }
}
