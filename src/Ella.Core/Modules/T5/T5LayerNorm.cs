using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.T5;

/// <summary>T5's RMS norm: x·rsqrt(mean(x²) + eps)·w, no mean subtraction, no bias; the variance in float32.</summary>
public sealed class T5LayerNorm : nn.Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly double _eps;

    public T5LayerNorm(int hiddenSize, double eps) : base(nameof(T5LayerNorm))
    {
        weight = Layers.Parameter([hiddenSize], () => ones(hiddenSize));
        _eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var variance = x.to_type(ScalarType.Float32).pow(2).mean([-1], keepdim: true);
        var h = x * (variance + _eps).rsqrt();
        if (weight.dtype is ScalarType.Float16 or ScalarType.BFloat16) h = h.to_type(weight.dtype);
        return (weight * h).MoveToOuterDisposeScope();
    }
}
