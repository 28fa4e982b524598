using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// The paper's Tab. 6 "AdaLN-Zero" block: the TSC block plus a zero-initialised gate per residual branch,
/// [gate_attn, gate_mlp] = gate(silu(t_emb)) with gate a Linear(time_embed_dim, 2·width). At initialisation both
/// branches are closed, so the block passes the latents through. Names: the TSC block's plus <c>gate</c>.
/// </summary>
public sealed class GatedPerceiverAttentionBlock : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    readonly PackedMultiheadAttention attn;
    readonly SquaredReluMlp mlp;
    readonly AdaLayerNorm ln_1;
    readonly AdaLayerNorm ln_2;
    readonly AdaLayerNorm ln_ff;
    readonly Linear gate;

    public GatedPerceiverAttentionBlock(int width, int heads, int timeEmbeddingDim) : base(nameof(GatedPerceiverAttentionBlock))
    {
        attn = new PackedMultiheadAttention(width, heads);
        mlp = new SquaredReluMlp(width);
        ln_1 = new AdaLayerNorm(width, timeEmbeddingDim);
        ln_2 = new AdaLayerNorm(width, timeEmbeddingDim);
        ln_ff = new AdaLayerNorm(width, timeEmbeddingDim);
        gate = Layers.Linear(timeEmbeddingDim, 2 * width);
        if (!Layers.SkippingInit)
            using (no_grad())
            {
                gate.weight!.zero_();
                gate.bias!.zero_();
            }
        RegisterComponents();
    }

    /// <param name="text">[B, L, width]</param>
    /// <param name="latents">[B, num_latents, width]</param>
    /// <param name="timestepEmbedding">[B, 1, time_embed_dim]</param>
    public override Tensor forward(Tensor text, Tensor latents, Tensor timestepEmbedding)
    {
        using var scope = NewDisposeScope();
        var gates = gate.forward(nn.functional.silu(timestepEmbedding)).view(latents.shape[0], 1, -1).chunk(2, -1);
        var normedLatents = ln_1.forward(latents, timestepEmbedding);
        var kv = cat([normedLatents, ln_2.forward(text, timestepEmbedding)], 1);
        var h = latents + gates[0] * attn.forward(normedLatents, kv);
        h = h + gates[1] * mlp.forward(ln_ff.forward(h, timestepEmbedding));
        return h.MoveToOuterDisposeScope();
    }
}
