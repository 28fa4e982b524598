using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>
/// Factories for the layers EllaSharp's modules use. Normally they initialise weights as TorchSharp does (the TSC
/// trainer needs that). Inside <see cref="EmptyWeights"/> they allocate uninitialised weights of the target dtype
/// instead — no random init, no fp32 copy — because a strict checkpoint load overwrites every one of them right after.
/// </summary>
public static class Layers
{
    [ThreadStatic] static ScalarType? _emptyDtype;

    /// <summary>While the returned scope lives, layers are created with uninitialised weights of <paramref name="dtype"/>.</summary>
    public static IDisposable EmptyWeights(ScalarType dtype)
    {
        var previous = _emptyDtype;
        _emptyDtype = dtype;
        return new Restore(() => _emptyDtype = previous);
    }

    public static bool SkippingInit => _emptyDtype != null;

    [ThreadStatic] static bool _meta;

    /// <summary>
    /// While the returned scope lives (inside <see cref="EmptyWeights"/>), weights go on the meta device: a model is
    /// built with its names and shapes only, so they can be checked against a checkpoint before anything is allocated.
    /// </summary>
    public static IDisposable MetaWeights()
    {
        var previous = _meta;
        _meta = true;
        return new Restore(() => _meta = previous);
    }

    /// <summary>
    /// Layers created while the returned scope lives keep float32 weights even when the model loads in bf16
    /// (timestep embeddings: small, and where reduced precision costs most exactness).
    /// </summary>
    public static IDisposable FullPrecision()
    {
        var previous = _emptyDtype;
        if (previous != null) _emptyDtype = ScalarType.Float32;
        return new Restore(() => _emptyDtype = previous);
    }

    sealed class Restore(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    static Parameter Empty(params long[] shape) => nn.Parameter(empty(shape, dtype: _emptyDtype!.Value, device: _meta ? META : null));

    public static Linear Linear(long inFeatures, long outFeatures, bool hasBias = true)
    {
        if (!SkippingInit) return nn.Linear(inFeatures, outFeatures, hasBias);
        var m = nn.Linear(inFeatures, outFeatures, hasBias, device: META);
        m.weight = Empty(outFeatures, inFeatures);
        if (hasBias) m.bias = Empty(outFeatures);
        return m;
    }

    public static Embedding Embedding(long count, long dim)
    {
        if (!SkippingInit) return nn.Embedding(count, dim);
        var m = nn.Embedding(count, dim, device: META);
        m.weight = Empty(count, dim);
        return m;
    }

    public static LayerNorm LayerNorm(long dim, double eps, bool affine = true)
    {
        if (!SkippingInit)
        {
            var n = nn.LayerNorm(dim, eps, elementwise_affine: affine);
            if (affine)
                using (no_grad()) { n.weight!.fill_(1.0); n.bias!.zero_(); } // as PyTorch; see GroupNorm
            return n;
        }
        var m = nn.LayerNorm(dim, eps, elementwise_affine: affine, device: META);
        if (affine) { m.weight = Empty(dim); m.bias = Empty(dim); }
        return m;
    }

    public static GroupNorm GroupNorm(long groups, long channels, double eps, bool affine = true)
    {
        if (!SkippingInit)
        {
            // TorchSharp 0.107's GroupNorm leaves its affine parameters uninitialised (seen: values up to 1e31);
            // PyTorch initialises them to ones and zeros.
            var g = nn.GroupNorm(groups, channels, eps, affine);
            if (affine)
                using (no_grad()) { g.weight!.fill_(1.0); g.bias!.zero_(); }
            return g;
        }
        var m = nn.GroupNorm(groups, channels, eps, affine, device: META);
        if (affine) { m.weight = Empty(channels); m.bias = Empty(channels); }
        return m;
    }

    public static Conv2d Conv2d(long inChannels, long outChannels, long kernel, long stride = 1, long padding = 0, bool hasBias = true)
    {
        if (!SkippingInit) return nn.Conv2d(inChannels, outChannels, kernel, stride: stride, padding: padding, bias: hasBias);
        var m = nn.Conv2d(inChannels, outChannels, kernel, stride: stride, padding: padding, bias: hasBias, device: META);
        m.weight = Empty(outChannels, inChannels, kernel, kernel);
        if (hasBias) m.bias = Empty(outChannels);
        return m;
    }

    /// <summary>
    /// A stride-1, "same"-padded convolution with few output channels (a model's <c>conv_out</c>). While autograd
    /// records, a 3×3 kernel with fewer than 16 output channels runs with its weight zero-padded to 16 output channels
    /// and the extra channels cut off: libtorch 2.10's CPU convolution backward returns wrong gradients (1% off, or
    /// inf/NaN, depending on the batch size) for such convolutions in float32, while 16 or more channels, 1×1 kernels and
    /// float64 are exact (tests/Ella.Tests/Training/ConvolutionGradientTests.cs). The forward result is the same.
    /// </summary>
    public static Tensor OutputConv(Conv2d conv, Tensor x)
    {
        var weight = conv.weight!;
        long outChannels = weight.shape[0], kernel = weight.shape[2];
        if (outChannels >= MinExactOutputChannels || kernel == 1 || !is_grad_enabled() || !(x.requires_grad || weight.requires_grad))
            return conv.forward(x);
        using var scope = NewDisposeScope();
        long extra = MinExactOutputChannels - outChannels;
        var w = nn.functional.pad(weight, [0, 0, 0, 0, 0, 0, 0, extra]);
        var b = conv.bias is null ? null : nn.functional.pad(conv.bias, [0, extra]);
        var y = nn.functional.conv2d(x, w, b, padding: [(kernel - 1) / 2, (kernel - 1) / 2]);
        return y.narrow(1, 0, outChannels).MoveToOuterDisposeScope();
    }

    /// <summary>Output channels from which libtorch's CPU convolution backward is exact (see <see cref="OutputConv"/>).</summary>
    public const int MinExactOutputChannels = 16;

    /// <summary>A free-standing parameter: <paramref name="init"/> normally, uninitialised inside <see cref="EmptyWeights"/>.</summary>
    public static Parameter Parameter(long[] shape, Func<Tensor> init) => SkippingInit ? Empty(shape) : nn.Parameter(init());
}
