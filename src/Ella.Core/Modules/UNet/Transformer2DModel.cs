using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.UNet;

/// <summary>
/// diffusers' <c>Transformer2DModel</c> for SD1.x/2.x: GroupNorm, proj_in (1×1 conv, or linear when
/// use_linear_projection), transformer blocks over the H·W tokens with cross-attention to the condition, proj_out,
/// plus the input.
/// </summary>
public sealed class Transformer2DModel : nn.Module<Tensor, Tensor, Tensor>
{
    readonly GroupNorm norm;
    readonly nn.Module<Tensor, Tensor> proj_in;
    readonly ModuleList<BasicTransformerBlock> transformer_blocks;
    readonly nn.Module<Tensor, Tensor> proj_out;
    readonly bool _linear;
    readonly int _inner;

    public Transformer2DModel(int heads, int dimHead, int inChannels, int crossAttentionDim, int layers, int groups,
        bool useLinearProjection, bool upcastAttention) : base(nameof(Transformer2DModel))
    {
        _inner = heads * dimHead;
        _linear = useLinearProjection;
        norm = Layers.GroupNorm(groups, inChannels, 1e-6);
        proj_in = useLinearProjection ? Layers.Linear(inChannels, _inner) : Layers.Conv2d(inChannels, _inner, 1);
        transformer_blocks = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(_ => new BasicTransformerBlock(_inner, heads, dimHead, crossAttentionDim, upcastAttention)).ToArray());
        proj_out = useLinearProjection ? Layers.Linear(_inner, inChannels) : Layers.Conv2d(_inner, inChannels, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor context) => Forward(x, context, null);

    /// <param name="contextBias">additive bias over the context's tokens ([B, 1, 1, L]), or null</param>
    public Tensor Forward(Tensor x, Tensor context, Tensor? contextBias)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        var hidden = norm.forward(x);
        if (!_linear)
        {
            hidden = proj_in.forward(hidden);
            hidden = hidden.permute(0, 2, 3, 1).reshape(b, h * w, _inner);
        }
        else
        {
            hidden = hidden.permute(0, 2, 3, 1).reshape(b, h * w, c);
            hidden = proj_in.forward(hidden);
        }
        foreach (var block in transformer_blocks) hidden = block.Forward(hidden, context, contextBias);
        if (!_linear)
        {
            hidden = hidden.reshape(b, h, w, _inner).permute(0, 3, 1, 2).contiguous();
            hidden = proj_out.forward(hidden);
        }
        else
        {
            hidden = proj_out.forward(hidden);
            hidden = hidden.reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous();
        }
        return (hidden + x).MoveToOuterDisposeScope();
    }
}

/// <summary>Self-attention, cross-attention and a GEGLU feed-forward, each pre-LayerNorm with a residual.</summary>
public sealed class BasicTransformerBlock : nn.Module<Tensor, Tensor, Tensor>
{
    readonly LayerNorm norm1;
    readonly Attention attn1;
    readonly LayerNorm norm2;
    readonly Attention attn2;
    readonly LayerNorm norm3;
    readonly FeedForward ff;

    public BasicTransformerBlock(int dim, int heads, int dimHead, int crossAttentionDim, bool upcastAttention)
        : base(nameof(BasicTransformerBlock))
    {
        norm1 = Layers.LayerNorm(dim, 1e-5);
        attn1 = new Attention(dim, null, heads, dimHead, upcastAttention: upcastAttention);
        norm2 = Layers.LayerNorm(dim, 1e-5);
        attn2 = new Attention(dim, crossAttentionDim, heads, dimHead, upcastAttention: upcastAttention);
        norm3 = Layers.LayerNorm(dim, 1e-5);
        ff = new FeedForward(dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor context) => Forward(x, context, null);

    /// <param name="contextBias">additive bias over the context's tokens ([B, 1, 1, L]) for the cross-attention, or null</param>
    public Tensor Forward(Tensor x, Tensor context, Tensor? contextBias)
    {
        using var scope = NewDisposeScope();
        var h = attn1.forward(norm1.forward(x), null) + x;
        h = attn2.Forward(norm2.forward(h), context, contextBias) + h;
        h = ff.forward(norm3.forward(h)) + h;
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary><c>ff.net.0.proj</c> (GEGLU: hidden ⊙ gelu(gate)) then <c>ff.net.2</c>; inner width 4×dim.</summary>
public sealed class FeedForward : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<nn.Module> net;

    public FeedForward(int dim, int mult = 4) : base(nameof(FeedForward))
    {
        net = nn.ModuleList<nn.Module>(new Geglu(dim, dim * mult), nn.Identity(), Layers.Linear(dim * mult, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = ((Geglu)net[0]).forward(x);
        return LinearKernel.Apply((Linear)net[2], h);
    }
}

public sealed class Geglu : nn.Module<Tensor, Tensor>
{
    readonly Linear proj;

    public Geglu(int dimIn, int dimOut) : base("GEGLU")
    {
        proj = Layers.Linear(dimIn, dimOut * 2);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var parts = LinearKernel.Apply(proj, x).chunk(2, -1);
        return (parts[0] * nn.functional.gelu(parts[1])).MoveToOuterDisposeScope();
    }
}
