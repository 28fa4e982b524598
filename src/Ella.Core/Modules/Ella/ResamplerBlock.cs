using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// A perceiver block without the timestep: the TSC block with affine LayerNorms (eps 1e-5) in place of AdaLN. Latents
/// attend to [LN(latents); LN(text)], then the squared-ReLU MLP. Names: attn, mlp.c_fc, mlp.c_proj, ln_1, ln_2, ln_ff.
/// </summary>
public sealed class ResamplerBlock : nn.Module<Tensor, Tensor, Tensor>
{
    readonly PackedMultiheadAttention attn;
    readonly SquaredReluMlp mlp;
    readonly LayerNorm ln_1;
    readonly LayerNorm ln_2;
    readonly LayerNorm ln_ff;

    public ResamplerBlock(int width, int heads) : base(nameof(ResamplerBlock))
    {
        attn = new PackedMultiheadAttention(width, heads);
        mlp = new SquaredReluMlp(width);
        ln_1 = Layers.LayerNorm(width, 1e-5);
        ln_2 = Layers.LayerNorm(width, 1e-5);
        ln_ff = Layers.LayerNorm(width, 1e-5);
        RegisterComponents();
    }

    /// <param name="text">[B, L, width]</param>
    /// <param name="latents">[B, num_latents, width]</param>
    public override Tensor forward(Tensor text, Tensor latents)
    {
        using var scope = NewDisposeScope();
        var normedLatents = ln_1.forward(latents);
        var kv = cat([normedLatents, ln_2.forward(text)], 1);
        var h = latents + attn.forward(normedLatents, kv);
        h = h + mlp.forward(ln_ff.forward(h));
        return h.MoveToOuterDisposeScope();
    }
}
