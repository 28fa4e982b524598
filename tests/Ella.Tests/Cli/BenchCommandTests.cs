using Ella.Benchmarks;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Ella.Cli.Commands.Bench;
using Ella.Hardware;
using Ella.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Ella.Tests.Cli;

public sealed class BenchCommandTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"ella-bench-test-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_dir)) Directory.Delete(_dir, true);
    }

    static CpuInfo Amd([CallerFilePath] string here = "") =>
        CpuInfo.Parse(File.ReadAllText(Path.Combine(Path.GetDirectoryName(here)!, "..", "Hardware", "cpuinfo", "amd-epyc-zen3-avx2.txt")));

    [Fact]
    public void Json_has_the_machine_its_peaks_the_auto_dtype_and_per_stage_efficiency()
    {
        var r = CliRunner.Run("bench", "--tiny", "--size", "64", "--runs", "1", "--only", "t5,tsc", "--work-dir", _dir, "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        using var doc = JsonDocument.Parse(r.Out);
        var root = doc.RootElement;
        var machine = root.GetProperty("machine");
        Assert.Equal(CpuInfo.Current.ModelName, machine.GetProperty("cpu").GetString());
        Assert.Equal(CpuInfo.Current.Vendor, machine.GetProperty("vendor").GetString());
        Assert.Equal(CpuInfo.Current.PresentKeyFlags, machine.GetProperty("flags").EnumerateArray().Select(f => f.GetString()!).ToList());
        Assert.Equal(CpuInfo.Current.IsaCap, machine.GetProperty("isa_cap").GetString());
        Assert.True(machine.GetProperty("threads").GetInt32() >= 1);
        foreach (var peak in new[] { "matmul_gflops", "conv_gflops" })
            foreach (var dtype in new[] { "fp32", "bf16" })
                Assert.True(machine.GetProperty(peak).GetProperty(dtype).GetDouble() > 0, $"{peak}.{dtype}");
        string auto = DTypeChoice.Name(DTypeChoice.Auto(CPU));
        Assert.Equal(auto, root.GetProperty("auto_dtype").GetString());
        // default dtypes: auto's choice and fp32
        foreach (var dtype in new[] { "fp32", auto }.Distinct())
        {
            var d = root.GetProperty(dtype);
            Assert.Equal(JsonValueKind.False, d.GetProperty("emulated").ValueKind);
            foreach (var stage in new[] { "t5_encode", "tsc_step" })
            {
                Assert.True(d.GetProperty($"{stage}_s").GetDouble() > 0);
                Assert.True(d.GetProperty($"{stage}_gflop").GetDouble() > 0);
                double e = d.GetProperty($"{stage}_efficiency").GetDouble();
                Assert.True(e > 0 && double.IsFinite(e), $"{dtype} {stage}_efficiency {e}");
            }
            Assert.Equal(JsonValueKind.Null, d.GetProperty("unet_step_s").ValueKind);
            Assert.False(d.TryGetProperty("unet_step_efficiency", out _));
        }
    }

    [Fact]
    public void Tools_stages_time_a_controlnet_step_against_the_unet_step_and_a_lora_merge()
    {
        var r = CliRunner.Run("bench", "--tiny", "--size", "64", "--runs", "2", "--only", "controlnet,lora", "--dtypes", "fp32", "--work-dir", _dir, "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        using var doc = JsonDocument.Parse(r.Out);
        var d = doc.RootElement.GetProperty("fp32");
        foreach (var key in new[] { "unet_step_s", "controlnet_embed_s", "controlnet_step_s", "lora_first_merge_s", "lora_merge_s", "lora_unmerge_s" })
            Assert.True(d.GetProperty(key).GetDouble() > 0, key);
        double ratio = d.GetProperty("controlnet_over_unet").GetDouble();
        double c = d.GetProperty("controlnet_step_s").GetDouble(), u = d.GetProperty("unet_step_s").GetDouble();
        // The JSON rounds times and the ratio to 4 decimals; the ratio is of the unrounded times of the same run.
        double bound = c / u * (0.00005 / c + 0.00005 / u) + 0.00005;
        Assert.True(Math.Abs(c / u - ratio) <= bound * 1.01, $"controlnet_over_unet {ratio} vs {c}/{u} = {c / u}");
        Assert.True(d.GetProperty("lora_merge_gflop").GetDouble() > 0);
        // stages not asked for are absent or null
        Assert.Equal(JsonValueKind.Null, d.GetProperty("t5_encode_s").ValueKind);
        // The LoRA has a UNet half and a text-encoder half, and the bench merged both (nothing unmatched: no warning).
        using var lora = Ella.Lora.LoraFile.Open(Path.Combine(_dir, "tiny", ToolStages.LoraFileName));
        Assert.Contains(lora.Modules, m => m.Target == Ella.Lora.LoraTarget.UNet);
        Assert.Contains(lora.Modules, m => m.Target == Ella.Lora.LoraTarget.TextEncoder);
    }

    [Fact]
    public void Bf16_without_native_kernels_is_measured_once_on_a_small_problem_and_marked_emulated()
    {
        var profile = MachineProfile.Measure([ScalarType.BFloat16], TextWriter.Null, quick: true, cpu: Amd());
        Assert.Contains(ScalarType.BFloat16, profile.Emulated);
        Assert.DoesNotContain(ScalarType.Float32, profile.Emulated);
        Assert.Equal(ScalarType.Float32, profile.AutoDType);
        Assert.Equal(1, profile.Matmul[ScalarType.BFloat16].Runs);
        Assert.Equal(1, profile.Conv[ScalarType.BFloat16].Runs);
        Assert.True(profile.Matmul[ScalarType.Float32].Runs >= 3);
        var json = profile.ToJson();
        Assert.Equal("AMD EPYC 7B13", json["cpu"]);
        Assert.Equal(new[] { "bf16" }, (List<string>)json["emulated_dtypes"]!);
    }

    /// <summary>A bench measures its peaks at the start and at the end; each peak is the better of the two, and a large
    /// difference is said (the machine was busy at one moment).</summary>
    [Fact]
    public void The_best_of_two_peak_measurements_counts_and_a_large_difference_is_said()
    {
        var first = MachineProfile.Measure([ScalarType.Float32], TextWriter.Null, quick: true, cpu: Amd());
        PeakMeasurement Scaled(PeakMeasurement p, double f) => p with { Gflops = p.Gflops * f };
        var later = new MachineProfile
        {
            Cpu = first.Cpu, Threads = first.Threads, AutoDType = first.AutoDType, Emulated = first.Emulated, LinearKernelInUse = first.LinearKernelInUse,
            Matmul = first.Matmul.ToDictionary(kv => kv.Key, kv => Scaled(kv.Value, kv.Key == ScalarType.Float32 ? 2.0 : 0.5)),
            Conv = first.Conv.ToDictionary(kv => kv.Key, kv => Scaled(kv.Value, 1.05)),
            Linear = first.Linear.ToDictionary(kv => kv.Key, kv => Scaled(kv.Value, 0.9)),
        };
        var log = new StringWriter();
        var best = first.Best(later, log);
        Assert.Equal(2.0 * first.Matmul[ScalarType.Float32].Gflops, best.Matmul[ScalarType.Float32].Gflops, 6);
        Assert.Equal(first.Matmul[ScalarType.BFloat16].Gflops, best.Matmul[ScalarType.BFloat16].Gflops, 6);
        Assert.Equal(1.05 * first.Conv[ScalarType.Float32].Gflops, best.Conv[ScalarType.Float32].Gflops, 6);
        Assert.All(best.Linear, kv => Assert.Equal(first.Linear[kv.Key].Gflops, kv.Value.Gflops, 6));
        Assert.Contains("fp32 matmul", log.ToString());
        Assert.Contains("bf16 matmul", log.ToString());
        Assert.DoesNotContain("conv", log.ToString());
    }

    /// <summary>A process spinning on the CPU is seen as another process's load; this process's own work is not.</summary>
    [Fact]
    public void Another_process_spinning_on_the_cpu_is_measured_as_busy()
    {
        using var spinner = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("sh", ["-c", "while :; do :; done"]))!;
        try
        {
            Thread.Sleep(200);
            var busy = CpuContention.OtherProcessesBusyCores(TimeSpan.FromSeconds(1));
            Assert.NotNull(busy);
            Assert.True(busy >= 0.3, $"a spinning shell measured as {busy:F2} cores");
        }
        finally { spinner.Kill(); spinner.WaitForExit(); }
    }

    [Fact]
    public void An_emulated_dtype_runs_each_stage_once_and_skips_stages_predicted_to_take_too_long()
    {
        var models = BenchModels.Tiny();
        var files = models.Prepare(_dir, new HashSet<string> { "tsc", "t5" }, TextWriter.Null);
        var once = StageTimer.Measure(models, files, new HashSet<string> { "tsc", "t5" }, ScalarType.BFloat16, emulated: true, peakGflops: 100, runs: 5, size: 64, TextWriter.Null);
        Assert.All(once.Stages, s => Assert.Equal(1, s.Time!.Runs));
        Assert.Equal(1, once.Load!.Runs);
        var skipped = StageTimer.Measure(models, files, new HashSet<string> { "tsc", "t5" }, ScalarType.BFloat16, emulated: true, peakGflops: 1e-9, runs: 5, size: 64, TextWriter.Null);
        Assert.All(skipped.Stages, s => { Assert.Null(s.Time); Assert.Contains("emulated", s.SkipReason); });
        Assert.Equal(["t5_encode", "tsc_step"], skipped.Stages.Select(s => s.Key));
    }

    /// <summary>An emulated dtype's "peak" is its fallback's rate on a small problem: its stages get no efficiency.</summary>
    [Fact]
    public void An_emulated_dtype_reports_times_and_limits_but_no_efficiency()
    {
        var machine = MachineProfile.Measure([ScalarType.Float32], TextWriter.Null, quick: true, cpu: Amd());
        DTypeResult Result(ScalarType dtype, bool emulated)
        {
            var r = new DTypeResult(dtype, emulated);
            r.Stages.Add(new StageTiming("tsc_step", "TSC step", new TimingStats(1.0, 1.0, 1.0, 1), Flops: 15.8e9));
            return r;
        }
        var json = BenchReport.Json(machine, [Result(ScalarType.Float32, false), Result(ScalarType.BFloat16, true)], psnr: null, size: 64, runs: 1);
        var fp32 = (Dictionary<string, object?>)json["fp32"]!;
        var bf16 = (Dictionary<string, object?>)json["bf16"]!;
        Assert.Equal(Math.Round(15.8 / machine.PeakGflops(ScalarType.Float32), 4), (double)fp32["tsc_step_efficiency"]!, 6);
        Assert.Equal(1.0, (double)bf16["tsc_step_s"]!);
        Assert.True((double)bf16["tsc_step_limit_s"]! > 0);
        Assert.True(bf16.ContainsKey("tsc_step_efficiency"));
        Assert.Null(bf16["tsc_step_efficiency"]);
        var table = new StringWriter();
        BenchReport.Table(table, machine, [Result(ScalarType.BFloat16, true)], psnr: null, size: 64, runs: 1);
        Assert.Contains("– (emulated)", table.ToString());
    }

    [Theory]
    [InlineData("--dtypes", "fp16", "fp16")]
    [InlineData("--dtypes", "int8", "int8")]
    [InlineData("--only", "clip", "clip")]
    [InlineData("--threads", "0", "--threads")]
    public void Bad_input_is_one_line_and_exit_code_2(string flag, string value, string named)
    {
        var r = CliRunner.Run("bench", "--tiny", "--work-dir", _dir, flag, value);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(named, r.Error);
    }

    [Fact]
    public void Info_reports_versions_cpu_threads_auto_dtype_and_the_libtorch_build()
    {
        var r = CliRunner.Run("info", "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        using var doc = JsonDocument.Parse(r.Out);
        var root = doc.RootElement;
        Assert.Equal(CpuInfo.Current.ModelName, root.GetProperty("cpu").GetProperty("model").GetString());
        Assert.Equal(CpuInfo.KeyFlags, root.GetProperty("cpu").GetProperty("flags").EnumerateObject().Select(p => p.Name));
        Assert.Equal(DTypeChoice.Name(DTypeChoice.Auto(CPU)), root.GetProperty("auto_dtype").GetString());
        Assert.StartsWith("2.", root.GetProperty("libtorch_version").GetString());
        Assert.True(root.GetProperty("threads").GetInt32() >= 1);
        Assert.False(string.IsNullOrEmpty(root.GetProperty("mkldnn_version").GetString()));
        Assert.False(string.IsNullOrEmpty(root.GetProperty("blas").GetString()));

        var text = CliRunner.Run("info");
        Assert.True(text.ExitCode == 0, text.Error);
        Assert.Contains("dtype auto:", text.Out);
        Assert.Contains("oneDNN", text.Out);
    }
}
