using Ella.Hardware;
using Ella.Modules.Common;
using static TorchSharp.torch;

namespace Ella.Tests.Modules;

public class LinearKernelTests
{
    /// <summary>The float64 product, the reference both float32 kernels are measured against.</summary>
    static Tensor Reference(TorchSharp.Modules.Linear linear, Tensor x) =>
        nn.functional.linear(x.to_type(ScalarType.Float64), linear.weight!.to_type(ScalarType.Float64), linear.bias!.to_type(ScalarType.Float64));

    [Theory]
    [InlineData(LinearKernelKind.Blas)]
    [InlineData(LinearKernelKind.OneDnnConv)]
    public void Both_kernels_compute_the_linear_layer(LinearKernelKind kind)
    {
        var gen = new Generator(5);
        using var linear = TorchSharp.torch.nn.Linear(96, 160);
        using var _ = inference_mode();
        var x = randn([2, 100, 96], generator: gen);
        // Contiguous 3-D input, a transposed (non-contiguous) one, and a narrow view with a storage offset (chunk's output).
        var wide = randn([2, 100, 192], generator: gen);
        foreach (var (name, input) in new[] { ("contiguous", x), ("transposed", randn([2, 96, 100], generator: gen).transpose(1, 2)), ("offset view", wide.chunk(2, -1)[1]) })
        {
            var y = LinearKernel.Apply(linear, input, kind);
            Assert.Equal(new long[] { 2, 100, 160 }, y.shape);
            Assert.True(y.is_contiguous(), $"{kind} {name}: the result is contiguous");
            double err = (y.to_type(ScalarType.Float64) - Reference(linear, input)).abs().max().item<double>();
            Assert.True(err < 2e-5, $"{kind} {name}: max error {err:E2} against float64");
        }
    }

    [Fact]
    public void Autograd_and_hooks_keep_the_module_forward()
    {
        using var linear = TorchSharp.torch.nn.Linear(32, 8);
        int calls = 0;
        var hook = linear.register_forward_hook((_, _, output) => { calls++; return output; });
        var x = randn(100, 32);
        using (var y = LinearKernel.Apply(linear, x, LinearKernelKind.OneDnnConv))
        {
            Assert.True(y.requires_grad, "the weight's gradient is recorded");
            Assert.Equal(1, calls);
        }
        using (var _ = inference_mode())
        {
            // In inference a hooked module still runs its hooks once it is registered.
            using (LinearKernel.KeepModuleCall(linear))
                LinearKernel.Apply(linear, x, LinearKernelKind.OneDnnConv).Dispose();
            Assert.Equal(2, calls);
            LinearKernel.Apply(linear, x, LinearKernelKind.OneDnnConv).Dispose();
            Assert.Equal(2, calls);
        }
        hook.remove();
    }

    [Fact]
    public void Amd_cpus_with_avx512_use_onednn_and_others_keep_blas()
    {
        var flags = (string f) => new HashSet<string>(f.Split(' '));
        Assert.Equal(LinearKernelKind.OneDnnConv, LinearKernel.Choose(new CpuInfo("AuthenticAMD", "AMD EPYC", flags("avx2 fma avx512f avx512_bf16"), 2, 2)));
        Assert.Equal(LinearKernelKind.Blas, LinearKernel.Choose(new CpuInfo("AuthenticAMD", "AMD EPYC", flags("avx2 fma"), 2, 2)));
        Assert.Equal(LinearKernelKind.Blas, LinearKernel.Choose(new CpuInfo("GenuineIntel", "Intel Xeon", flags("avx2 fma avx512f avx512_bf16"), 2, 2)));
        // Once MKL runs its AVX-512 kernels on the AMD CPU, MKL is used there too.
        Assert.Equal(LinearKernelKind.Blas, LinearKernel.Choose(new CpuInfo("AuthenticAMD", "AMD EPYC", flags("avx2 fma avx512f avx512_bf16"), 2, 2), mklUsesAvx512: true));
    }
}
