using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Ella.Hardware;
using static TorchSharp.torch;

namespace Ella.Tests.Hardware;

/// <summary><c>ELLA_CPU_ISA</c>: the flags a capped CPU keeps, the dtype <c>auto</c> then picks, and the kernels libtorch runs.</summary>
public class CpuIsaCapTests
{
    static CpuInfo Intel([CallerFilePath] string here = "") =>
        CpuInfo.Parse(File.ReadAllText(Path.Combine(Path.GetDirectoryName(here)!, "cpuinfo", "intel-xeon-avx512-bf16.txt")));

    [Fact]
    public void An_avx2_cap_leaves_avx2_and_fma_so_auto_picks_fp32_and_bf16_warns()
    {
        var cpu = Intel().CappedAt("avx2");
        Assert.Equal(["avx2", "fma"], cpu.PresentKeyFlags);
        Assert.False(cpu.HasNativeBf16);
        Assert.Equal("avx2", cpu.IsaCap);
        Assert.Contains("capped at avx2 by ELLA_CPU_ISA", cpu.Describe());
        Assert.Equal(ScalarType.Float32, DTypeChoice.Auto(CPU, cpu));
        Assert.NotNull(DTypeChoice.Resolve("bf16", CPU, cpu).Warning);
        var amx = CpuInfo.Parse("processor\t: 0\nflags\t\t: sse4_2 avx2 fma avx_vnni avx512f avx512bw amx_bf16 amx_tile\n").CappedAt("avx2");
        Assert.Equal(["avx2", "fma", "sse4_2"], amx.Flags.Order().ToArray());
    }

    [Fact]
    public void An_avx512_cap_keeps_avx512_and_vnni_but_not_bf16()
    {
        var cpu = Intel().CappedAt("avx512");
        Assert.Equal(["avx2", "fma", "avx512f", "avx512_vnni"], cpu.PresentKeyFlags);
        Assert.False(cpu.HasNativeBf16);
        Assert.Equal(ScalarType.Float32, DTypeChoice.Auto(CPU, cpu));
        // No cap: the CPU as read.
        Assert.Null(Intel().CappedAt(null).IsaCap);
        Assert.True(Intel().CappedAt(null).HasNativeBf16);
    }

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("native", null)]
    [InlineData(" AVX2 ", "avx2")]
    [InlineData("avx512", "avx512")]
    public void Values_are_read_case_insensitively(string? value, string? cap) => Assert.Equal(cap, CpuIsaCap.Parse(value));

    [Fact]
    public void An_unknown_value_names_the_variable_and_the_choices()
    {
        var e = Assert.Throws<EllaException>(() => CpuIsaCap.Parse("sse4"));
        Assert.Contains("ELLA_CPU_ISA", e.Message);
        Assert.Contains("'sse4'", e.Message);
        Assert.Contains("avx2", e.Message);
    }

    [Fact]
    public void Each_cap_sets_the_switches_of_aten_onednn_and_mkl()
    {
        Assert.Empty(CpuIsaCap.NativeSwitches(null));
        Assert.Equal([("ATEN_CPU_CAPABILITY", "avx2"), ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("MKL_ENABLE_INSTRUCTIONS", "AVX2")], CpuIsaCap.NativeSwitches("avx2"));
        Assert.Contains(("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI"), CpuIsaCap.NativeSwitches("avx512"));
    }

    static (int Code, string Out, string Error) Info(string? cap)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "ella.dll"), "info", "--json" }) psi.ArgumentList.Add(a);
        foreach (var name in new[] { "ELLA_CPU_ISA", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS" }) psi.Environment.Remove(name);
        if (cap != null) psi.Environment["ELLA_CPU_ISA"] = cap;
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(2)), "ella info did not finish");
        return (process.ExitCode, stdout, stderr.Result);
    }

    [Fact]
    public void Ella_info_in_a_capped_process_reports_avx2_kernels_and_fp32()
    {
        var (code, stdout, error) = Info("avx2");
        Assert.True(code == 0, error);
        var doc = JsonDocument.Parse(stdout).RootElement;
        Assert.Equal("avx2", doc.GetProperty("isa_cap").GetString());
        Assert.False(doc.GetProperty("cpu").GetProperty("flags").GetProperty("avx512f").GetBoolean());
        Assert.Equal("fp32", doc.GetProperty("auto_dtype").GetString());
        // libtorch itself reports the vectorised kernels it dispatches to: AVX2 under the cap (never AVX512).
        string? capability = doc.GetProperty("cpu_capability").GetString();
        Assert.NotNull(capability);
        Assert.DoesNotContain("512", capability);

        var bad = Info("sse4");
        Assert.Equal(2, bad.Code);
        Assert.Contains("ELLA_CPU_ISA", bad.Error);
        Assert.DoesNotContain("   at ", bad.Error);
    }
}
