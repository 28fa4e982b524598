using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>The activation functions configs name by string: diffusers' (act_fn) and transformers' (ACT2FN).</summary>
public static class Activations
{
    static readonly string[] Known = ["silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "quick_gelu", "relu", "mish"];

    public static bool IsKnown(string name) => Known.Contains(name);

    public static Tensor Apply(string name, Tensor x) => name switch
    {
        "silu" or "swish" => nn.functional.silu(x),
        "gelu" => nn.functional.gelu(x),
        "gelu_new" or "gelu_pytorch_tanh" => nn.functional.gelu(x, approximate: TorchSharp.Modules.GELU.Approximate.tanh),
        "quick_gelu" => x * nn.functional.sigmoid(x * 1.702),
        "relu" => nn.functional.relu(x),
        "mish" => x.mul(nn.functional.softplus(x).tanh_()),
        _ => throw new EllaException($"unknown activation '{name}' ({string.Join(", ", Known)})"),
    };
}
