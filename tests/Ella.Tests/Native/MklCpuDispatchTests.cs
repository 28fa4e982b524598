using Ella.Hardware;
using Ella.Native;
using static TorchSharp.torch;

namespace Ella.Tests.Native;

public class MklCpuDispatchTests
{
    [Fact]
    public void Finds_the_plt_slot_of_mkls_vendor_test_in_libtorch_cpu()
    {
        TorchRuntime.Initialize();
        var (path, _) = MklCpuDispatch.FindLibrary("libtorch_cpu.so");
        Assert.NotNull(path);
        long? slot = MklCpuDispatch.JumpSlotOffset(path!, "mkl_serv_intel_cpu_true");
        Assert.NotNull(slot);
        Assert.True(slot > 0 && slot < new FileInfo(path!).Length * 2, $"slot offset {slot}");
        Assert.Null(MklCpuDispatch.JumpSlotOffset(path!, "no_such_function_in_libtorch"));
    }

    [Fact]
    public void On_amd_cpus_mkl_is_switched_and_its_matmuls_stay_exact()
    {
        TorchRuntime.Initialize();
        var cpu = CpuInfo.Current;
        bool qualifies = cpu.Vendor.Contains("AMD") && cpu.Has("avx2") && Environment.GetEnvironmentVariable("ELLA_MKL_DISPATCH") is null;
        Assert.Equal(qualifies, MklCpuDispatch.Applied);
        var gen = new Generator(3);
        var a = randn([512, 320], generator: gen);
        var b = randn([320, 300], generator: gen);
        using var _ = inference_mode();
        double err = (a.mm(b).to_type(ScalarType.Float64) - a.to_type(ScalarType.Float64).mm(b.to_type(ScalarType.Float64))).abs().max().item<double>();
        Assert.True(err < 1e-3, $"fp32 matmul max error {err:E2} against float64 (|values| ~ 18)");
    }
}
