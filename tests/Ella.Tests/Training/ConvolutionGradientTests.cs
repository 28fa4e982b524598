using Ella.Modules.Common;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ella.Tests.Training;

/// <summary>
/// libtorch 2.10's CPU convolution backward is wrong in float32 for 3×3 kernels with fewer than 16 output channels
/// (seen on an AMD EPYC with AVX-512: 1% off, or inf, depending on the batch), which a model's conv_out is.
/// <see cref="Layers.OutputConv"/> must give float32 gradients within rounding of float64 ones, and the same forward.
/// </summary>
public sealed class ConvolutionGradientTests(ITestOutputHelper output)
{
    static (Tensor Input, Tensor Weight, Tensor Bias) Grads(nn.Module<Tensor, Tensor> conv, ScalarType dtype, Tensor x64, Tensor w64)
    {
        conv.to(dtype);
        foreach (var p in conv.parameters()) p.grad = null;
        var x = x64.to(dtype).detach().clone().requires_grad_(true);
        (Layers.OutputConv((TorchSharp.Modules.Conv2d)conv, x) * w64.to(dtype)).sum().backward();
        var ps = conv.parameters().ToList();
        return (x.grad!.to(ScalarType.Float64), ps[0].grad!.to(ScalarType.Float64), ps[1].grad!.to(ScalarType.Float64));
    }

    [Theory]
    [InlineData(64, 4, 2)]
    [InlineData(64, 4, 8)]
    [InlineData(64, 3, 32)]
    [InlineData(64, 8, 2)]
    [InlineData(128, 4, 8)]
    [InlineData(64, 16, 8)]
    public void Output_convolution_gradients_match_float64(int inChannels, int outChannels, int batch)
    {
        manual_seed(outChannels * 100 + batch);
        var conv = nn.Conv2d(inChannels, outChannels, 3, padding: 1);
        conv.to(ScalarType.Float64);
        var x64 = randn([batch, inChannels, 16, 16], dtype: ScalarType.Float64);
        var w64 = randn([batch, outChannels, 16, 16], dtype: ScalarType.Float64);
        var exact = Grads(conv, ScalarType.Float64, x64, w64);
        var single = Grads(conv, ScalarType.Float32, x64, w64);
        foreach (var (name, a, b) in new[] { ("input", exact.Input, single.Input), ("weight", exact.Weight, single.Weight), ("bias", exact.Bias, single.Bias) })
        {
            double rel = ((a - b).norm() / a.norm()).item<double>();
            output.WriteLine($"{inChannels}->{outChannels} batch {batch} {name}: {rel:E2}");
            Assert.True(rel < 1e-5, $"{name} gradient off by {rel:E2} (relative)");
        }
        using (no_grad())
        {
            using var mode = inference_mode();
            var x = x64.to(ScalarType.Float32);
            Assert.True(Layers.OutputConv(conv, x).allclose(conv.forward(x), 1e-5, 1e-5));
        }
    }
}
