using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>transformers' ACT2FN names used by the text encoders.</summary>
public static class HfActivations
{
    public static Tensor Apply(string name, Tensor x) => name switch
    {
        "relu" => nn.functional.relu(x),
        "gelu" => nn.functional.gelu(x),
        "gelu_new" or "gelu_pytorch_tanh" => nn.functional.gelu(x, approximate: TorchSharp.Modules.GELU.Approximate.tanh),
        "quick_gelu" => x * nn.functional.sigmoid(x * 1.702),
        "silu" or "swish" => nn.functional.silu(x),
        _ => throw new EllaException($"unknown activation '{name}'"),
    };
}
