using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>diffusers' <c>TimestepEmbedding</c>: linear_1 → activation → linear_2.</summary>
public sealed class TimestepEmbedding : nn.Module<Tensor, Tensor>
{
    readonly Linear linear_1;
    readonly Linear linear_2;
    readonly string _activation;

    public TimestepEmbedding(int inChannels, int timeEmbedDim, string activation = "silu", int? outDim = null)
        : base(nameof(TimestepEmbedding))
    {
        linear_1 = Layers.Linear(inChannels, timeEmbedDim);
        linear_2 = Layers.Linear(timeEmbedDim, outDim ?? timeEmbedDim);
        _activation = activation;
        if (!Activations.IsKnown(activation))
            throw new EllaException($"TimestepEmbedding: unknown act_fn '{activation}'");
        RegisterComponents();
    }

    /// <summary>The dtype of this module's weights.</summary>
    public ScalarType DType => linear_1.weight!.dtype;

    public override Tensor forward(Tensor sample)
    {
        using var h = linear_1.forward(sample);
        using var a = Activations.Apply(_activation, h);
        return linear_2.forward(a);
    }
}
