using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// ELLA's timestep-conditioned LayerNorm: LayerNorm without affine (eps 1e-6), then x·(1 + scale) + shift, where
/// [shift, scale] = linear(silu(t_emb)) — shift comes first.
/// </summary>
public sealed class AdaLayerNorm : nn.Module<Tensor, Tensor, Tensor>
{
    readonly Linear linear;
    readonly long _dim;

    public AdaLayerNorm(int embeddingDim, int timeEmbeddingDim) : base(nameof(AdaLayerNorm))
    {
        _dim = embeddingDim;
        linear = Layers.Linear(timeEmbeddingDim, 2 * embeddingDim);
        if (!Layers.SkippingInit) // the authors zero-initialise the modulation
            using (no_grad())
            {
                linear.weight!.zero_();
                linear.bias!.zero_();
            }
        RegisterComponents();
    }

    /// <param name="x">[B, L, D]</param>
    /// <param name="timestepEmbedding">[B, 1, T] (or [B, T])</param>
    public override Tensor forward(Tensor x, Tensor timestepEmbedding)
    {
        using var scope = NewDisposeScope();
        var emb = linear.forward(nn.functional.silu(timestepEmbedding)).view(x.shape[0], 1, -1);
        var parts = emb.chunk(2, -1);
        var normed = nn.functional.layer_norm(x, [_dim], eps: 1e-6);
        return normed.mul(parts[1].add(1)).add_(parts[0]).MoveToOuterDisposeScope();
    }
}
