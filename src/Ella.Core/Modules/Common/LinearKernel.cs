using Ella.Hardware;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>Which kernel computes a float32 linear layer during inference.</summary>
public enum LinearKernelKind
{
    /// <summary>libtorch's own linear: MKL's sgemm.</summary>
    Blas,
    /// <summary>oneDNN's 1×1 convolution over a channels-last view of the input (no copy in or out).</summary>
    OneDnnConv,
}

/// <summary>
/// The kernel for the linear layers of the heavy modules (attention projections, feed-forwards) in inference.
/// libtorch's float32 linear is MKL's sgemm, and MKL picks its code path by CPU vendor: on an AMD CPU with AVX-512
/// (Zen 4 and later) it runs its AVX2 path, about half the machine's peak (`ella bench`: matmul 147 GFLOP/s against
/// 319 for a 3×3 convolution on a 2-core Zen 4). oneDNN, which runs libtorch's convolutions, dispatches by instruction
/// set instead. So on those CPUs a float32 linear over [..., in] is computed as a 1×1 convolution of the input seen as a
/// channels-last [1, in, rows, 1] image: the same products, float32 accumulation, no layout copies (measured there:
/// 265 against 175 GFLOP/s for [8192, 320] → 320). bfloat16 matmuls already run in oneDNN; other CPUs keep MKL, and
/// so does an AMD CPU once <see cref="Native.MklCpuDispatch"/> has put MKL on its AVX-512 path (faster still).
/// Training (autograd recording) and modules registered with <see cref="KeepModuleCall"/> (a LoRA's forward hooks)
/// always go through the module's own call. <c>ELLA_LINEAR_KERNEL=blas|onednn</c> overrides the choice.
/// </summary>
public static class LinearKernel
{
    /// <summary>Fewer rows than this keep the plain linear (the convolution's set-up would dominate).</summary>
    public const long MinRows = 64;

    static LinearKernelKind? _current;

    /// <summary>The kernel used for float32 inference linears in this process (decided on first use, after
    /// <see cref="Native.TorchRuntime.Initialize"/> has had MKL's dispatch fixed where it can).</summary>
    public static LinearKernelKind Current
    {
        get => _current ??= FromEnvironment() ?? Choose(CpuInfo.Current, Native.MklCpuDispatch.Applied);
        set => _current = value;
    }

    /// <summary>oneDNN on AMD CPUs with AVX-512 while MKL stays on its AVX2 path there; MKL everywhere else.</summary>
    public static LinearKernelKind Choose(CpuInfo cpu, bool mklUsesAvx512 = false) =>
        !mklUsesAvx512 && cpu.Vendor.Contains("AMD", StringComparison.OrdinalIgnoreCase) && cpu.Has("avx512f") ? LinearKernelKind.OneDnnConv : LinearKernelKind.Blas;

    public static string Name(LinearKernelKind kind) => kind == LinearKernelKind.OneDnnConv ? "onednn" : "blas";

    static LinearKernelKind? FromEnvironment() => Environment.GetEnvironmentVariable("ELLA_LINEAR_KERNEL")?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => null,
        "blas" or "mkl" => LinearKernelKind.Blas,
        "onednn" or "conv" => LinearKernelKind.OneDnnConv,
        var other => throw new EllaException($"ELLA_LINEAR_KERNEL: '{other}' is not known (choose auto, blas or onednn)"),
    };

    static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Linear, object> Hooked = new();

    /// <summary>
    /// Makes <see cref="Apply"/> always call <paramref name="linear"/> as a module, so that its forward hooks run (a LoRA
    /// being trained adds its term in one) even in inference; disposing the result undoes it.
    /// </summary>
    public static IDisposable KeepModuleCall(Linear linear)
    {
        Hooked.AddOrUpdate(linear, true);
        return new Release(() => Hooked.Remove(linear));
    }

    sealed class Release(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    /// <summary><paramref name="linear"/> applied to <paramref name="x"/> by <see cref="Current"/> (module call with hooks when autograd records).</summary>
    public static Tensor Apply(Linear linear, Tensor x) => Apply(linear, x, Current);

    public static Tensor Apply(Linear linear, Tensor x, LinearKernelKind kind)
    {
        var weight = linear.weight!;
        if (kind != LinearKernelKind.OneDnnConv || is_grad_enabled() || Hooked.TryGetValue(linear, out _) || x.dtype != ScalarType.Float32 || weight.dtype != ScalarType.Float32
            || x.device_type != TorchSharp.DeviceType.CPU || x.dim() < 2)
            return linear.call(x);
        long inFeatures = weight.shape[1], outFeatures = weight.shape[0];
        long rows = x.numel() / inFeatures;
        if (rows < MinRows || x.shape[^1] != inFeatures) return linear.call(x);
        using var scope = NewDisposeScope();
        var input = x.is_contiguous() ? x : x.contiguous();
        // [rows, in] row-major is exactly a channels-last [1, in, rows, 1] image.
        var image = input.as_strided([1, inFeatures, rows, 1], [rows * inFeatures, 1, inFeatures, inFeatures], input.storage_offset());
        var y = nn.functional.conv2d(image, weight.view(outFeatures, inFeatures, 1, 1), linear.bias);
        // A channels-last result is [rows, out] row-major already: the permute is free and the reshape a view.
        long[] shape = [.. x.shape[..^1], outFeatures];
        return y.permute(0, 2, 3, 1).reshape(shape).MoveToOuterDisposeScope();
    }
}
