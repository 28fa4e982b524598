using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>Refuses dtype/device pairs that cannot run usefully.</summary>
public static class DTypeGuard
{
    /// <summary>
    /// fp16 has no fast CPU kernels in libtorch (matmul runs about 1000× slower than bf16 on the CPUs measured), so it is
    /// refused on the CPU with a pointer to bf16; on CUDA it is fine.
    /// </summary>
    public static void Check(ScalarType dtype, Device? device, string what)
    {
        if (dtype == ScalarType.Float16 && (device is null || device.type == DeviceType.CPU))
            throw new EllaException($"{what}: fp16 is not supported on the CPU (libtorch has no fast fp16 CPU kernels; it runs ~1000× slower). Use bf16 (--dtype bf16) on the CPU, or fp16 on a CUDA device.");
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
            throw new EllaException($"{what}: dtype {dtype} is not supported (fp32, bf16, or fp16 on CUDA)");
    }
}

/// <summary>The most negative finite value of a dtype (torch.finfo(dtype).min), used for additive attention masks.</summary>
public static class MaskValue
{
    public static double Min(ScalarType dtype) => dtype switch
    {
        ScalarType.BFloat16 => -3.3895313892515355e38,
        ScalarType.Float16 => -65504.0,
        ScalarType.Float64 => double.MinValue,
        _ => float.MinValue,
    };
}
