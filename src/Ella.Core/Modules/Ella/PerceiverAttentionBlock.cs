using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// One block of the Perceiver resampler: latents attend to [AdaLN(latents); AdaLN(text)], then a squared-ReLU MLP.
/// Parameter names follow the authors' model.py: attn, mlp.c_fc, mlp.c_proj, ln_1, ln_2, ln_ff.
/// </summary>
public sealed class PerceiverAttentionBlock : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    readonly PackedMultiheadAttention attn;
    readonly SquaredReluMlp mlp;
    readonly AdaLayerNorm ln_1;
    readonly AdaLayerNorm ln_2;
    readonly AdaLayerNorm ln_ff;

    public PerceiverAttentionBlock(int width, int heads, int timeEmbeddingDim) : base(nameof(PerceiverAttentionBlock))
    {
        attn = new PackedMultiheadAttention(width, heads);
        mlp = new SquaredReluMlp(width);
        ln_1 = new AdaLayerNorm(width, timeEmbeddingDim);
        ln_2 = new AdaLayerNorm(width, timeEmbeddingDim);
        ln_ff = new AdaLayerNorm(width, timeEmbeddingDim);
        RegisterComponents();
    }

    /// <param name="text">[B, L, width] projected text features</param>
    /// <param name="latents">[B, num_latents, width]</param>
    /// <param name="timestepEmbedding">[B, 1, time_embed_dim]</param>
    public override Tensor forward(Tensor text, Tensor latents, Tensor timestepEmbedding)
    {
        using var scope = NewDisposeScope();
        var normedLatents = ln_1.forward(latents, timestepEmbedding);
        var kv = cat([normedLatents, ln_2.forward(text, timestepEmbedding)], 1);
        var h = latents + attn.forward(normedLatents, kv);
        h = h + mlp.forward(ln_ff.forward(h, timestepEmbedding));
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>c_fc → relu² → c_proj, 4× width.</summary>
public sealed class SquaredReluMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear c_fc;
    readonly Linear c_proj;

    public SquaredReluMlp(int width) : base(nameof(SquaredReluMlp))
    {
        c_fc = Layers.Linear(width, 4 * width);
        c_proj = Layers.Linear(4 * width, width);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = c_fc.forward(x);
        using var r = nn.functional.relu(h);
        using var sq = r.square();
        return c_proj.forward(sq);
    }
}
