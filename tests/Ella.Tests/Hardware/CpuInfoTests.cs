using System.Runtime.CompilerServices;
using Ella.Hardware;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Hardware;

public class CpuInfoTests
{
    static string Sample(string name, [CallerFilePath] string here = "") => File.ReadAllText(Path.Combine(Path.GetDirectoryName(here)!, "cpuinfo", name));

    static CpuInfo Intel => CpuInfo.Parse(Sample("intel-xeon-avx512-bf16.txt"));
    static CpuInfo Amd => CpuInfo.Parse(Sample("amd-epyc-zen3-avx2.txt"));

    [Fact]
    public void Intel_avx512_bf16_is_read_with_its_flags_and_cores()
    {
        var cpu = Intel;
        Assert.Equal("GenuineIntel", cpu.Vendor);
        Assert.Equal("Intel(R) Xeon(R) Processor", cpu.ModelName);
        Assert.Equal(["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni"], cpu.PresentKeyFlags);
        Assert.False(cpu.Has("amx_bf16"));
        Assert.True(cpu.HasNativeBf16);
        Assert.Equal(2, cpu.LogicalCpus);
        Assert.Equal(2, cpu.PhysicalCores);
    }

    [Fact]
    public void Amd_zen3_has_avx2_and_fma_but_no_native_bf16_and_smt_siblings_count_once()
    {
        var cpu = Amd;
        Assert.Equal("AuthenticAMD", cpu.Vendor);
        Assert.Equal("AMD EPYC 7B13", cpu.ModelName);
        Assert.Equal(["avx2", "fma"], cpu.PresentKeyFlags);
        Assert.False(cpu.HasNativeBf16);
        Assert.Equal(4, cpu.LogicalCpus);
        Assert.Equal(2, cpu.PhysicalCores);
        Assert.Contains("AMD EPYC 7B13", cpu.Describe());
    }

    [Fact]
    public void Physical_cores_come_from_sysfs_topology_when_given()
    {
        string root = Path.Combine(Path.GetTempPath(), $"ella-sysfs-{Guid.NewGuid():N}");
        try
        {
            // 8 logical CPUs: 2 packages × 2 cores × 2 threads; cpu7 offline.
            for (int i = 0; i < 8; i++)
            {
                string topo = Path.Combine(root, $"cpu{i}", "topology");
                Directory.CreateDirectory(topo);
                File.WriteAllText(Path.Combine(topo, "physical_package_id"), $"{i / 4}\n");
                File.WriteAllText(Path.Combine(topo, "core_id"), $"{i % 2}\n");
            }
            File.WriteAllText(Path.Combine(root, "cpu7", "online"), "0\n");
            Directory.CreateDirectory(Path.Combine(root, "cpufreq")); // not a CPU folder
            string text = string.Concat(Enumerable.Range(0, 8).Select(i => $"processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: X\nflags\t\t: avx2\n\n"));
            var cpu = CpuInfo.Parse(text, root);
            Assert.Equal(8, cpu.LogicalCpus);
            Assert.Equal(4, cpu.PhysicalCores);
            Assert.Equal(1, CpuInfo.Parse(text.Replace("processor", "x"), root).LogicalCpus);
        }
        finally { Directory.Delete(root, true); }
    }

    [Fact]
    public void Missing_fields_give_safe_defaults()
    {
        var cpu = CpuInfo.Parse("");
        Assert.Equal("unknown", cpu.Vendor);
        Assert.Equal(1, cpu.PhysicalCores);
        Assert.False(cpu.HasNativeBf16);
        Assert.True(cpu.DefaultThreads >= 1);
    }

    [Fact]
    public void Auto_picks_bf16_with_native_bf16_or_cuda_and_fp32_otherwise()
    {
        Assert.Equal(ScalarType.BFloat16, DTypeChoice.Auto(CPU, Intel));
        Assert.Equal(ScalarType.Float32, DTypeChoice.Auto(CPU, Amd));
        Assert.Equal(ScalarType.Float32, DTypeChoice.Auto(null, Amd));
        Assert.Equal(ScalarType.BFloat16, DTypeChoice.Auto(new Device(DeviceType.CUDA, 0), Amd));
        var amx = CpuInfo.Parse("processor\t: 0\nflags\t\t: avx2 amx_bf16 amx_tile\n");
        Assert.Equal(ScalarType.BFloat16, DTypeChoice.Auto(CPU, amx));

        var auto = DTypeChoice.Resolve("auto", CPU, Amd);
        Assert.True(auto.Auto);
        Assert.Equal("fp32", auto.Name);
        Assert.Null(auto.Warning);
        Assert.Equal("bf16", DTypeChoice.Resolve("AUTO", CPU, Intel).Name);
    }

    [Fact]
    public void Explicit_bf16_without_native_bf16_is_honoured_with_one_warning()
    {
        var slow = DTypeChoice.Resolve("bf16", CPU, Amd);
        Assert.Equal(ScalarType.BFloat16, slow.DType);
        Assert.False(slow.Auto);
        Assert.NotNull(slow.Warning);
        Assert.DoesNotContain('\n', slow.Warning);
        Assert.Contains("AMD EPYC 7B13", slow.Warning);
        Assert.Contains("no native bf16", slow.Warning);
        Assert.Contains("slower than fp32", slow.Warning);
        Assert.Null(DTypeChoice.Resolve("bf16", CPU, Intel).Warning);
        Assert.Null(DTypeChoice.Resolve("fp32", CPU, Amd).Warning);
        Assert.Null(DTypeChoice.Resolve("bf16", new Device(DeviceType.CUDA, 0), Amd).Warning);
        Assert.False(DTypeChoice.IsNativeOnCpu(ScalarType.BFloat16, Amd));
        Assert.True(DTypeChoice.IsNativeOnCpu(ScalarType.Float32, Amd));
        var e = Assert.Throws<EllaException>(() => DTypeChoice.Resolve("int8", CPU, Intel));
        Assert.Contains("int8", e.Message);
    }
}
