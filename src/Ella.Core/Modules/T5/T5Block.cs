using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.T5;

/// <summary>One encoder block: <c>layer.0</c> self-attention and <c>layer.1</c> feed-forward, each pre-norm residual.</summary>
public sealed class T5Block : nn.Module<Tensor, Tensor, Tensor>
{
    readonly ModuleList<nn.Module> layer;

    public T5Block(Configs.T5Config config, bool hasRelativeAttentionBias) : base(nameof(T5Block))
    {
        layer = nn.ModuleList<nn.Module>(new T5LayerSelfAttention(config, hasRelativeAttentionBias), new T5LayerFF(config));
        RegisterComponents();
    }

    T5LayerSelfAttention AttentionLayer => (T5LayerSelfAttention)layer[0];
    T5LayerFF FeedForwardLayer => (T5LayerFF)layer[1];
    public T5Attention Attention => AttentionLayer.SelfAttentionModule;

    public override Tensor forward(Tensor hidden, Tensor positionBias)
    {
        using var scope = NewDisposeScope();
        var h = AttentionLayer.forward(hidden, positionBias);
        if (h.dtype == ScalarType.Float16) h = ClampFp16(h);
        h = FeedForwardLayer.forward(h);
        if (h.dtype == ScalarType.Float16) h = ClampFp16(h);
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>transformers clamps fp16 activations to finfo.max − 1000 after each sub-layer.</summary>
    static Tensor ClampFp16(Tensor h) => h.clamp(-(65504.0 - 1000), 65504.0 - 1000);
}

public sealed class T5LayerSelfAttention : nn.Module<Tensor, Tensor, Tensor>
{
    readonly T5Attention SelfAttention;
    readonly T5LayerNorm layer_norm;

    public T5LayerSelfAttention(Configs.T5Config c, bool hasRelativeAttentionBias) : base(nameof(T5LayerSelfAttention))
    {
        SelfAttention = new T5Attention(c.DModel, c.DKv, c.NumHeads, hasRelativeAttentionBias, c.RelativeAttentionNumBuckets, c.RelativeAttentionMaxDistance);
        layer_norm = new T5LayerNorm(c.DModel, c.LayerNormEpsilon);
        RegisterComponents();
    }

    public T5Attention SelfAttentionModule => SelfAttention;

    public override Tensor forward(Tensor hidden, Tensor positionBias)
    {
        using var normed = layer_norm.forward(hidden);
        using var attn = SelfAttention.forward(normed, positionBias);
        return hidden + attn;
    }
}

public sealed class T5LayerFF : nn.Module<Tensor, Tensor>
{
    readonly nn.Module<Tensor, Tensor> DenseReluDense;
    readonly T5LayerNorm layer_norm;

    public T5LayerFF(Configs.T5Config c) : base(nameof(T5LayerFF))
    {
        DenseReluDense = c.IsGatedAct ? new T5DenseGatedActDense(c) : new T5DenseActDense(c);
        layer_norm = new T5LayerNorm(c.DModel, c.LayerNormEpsilon);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden)
    {
        using var normed = layer_norm.forward(hidden);
        using var ff = DenseReluDense.forward(normed);
        return hidden + ff;
    }
}

/// <summary>wo(act(wi_0·x) ⊙ wi_1·x): FLAN-T5 / T5 v1.1 ("gated-gelu").</summary>
public sealed class T5DenseGatedActDense : nn.Module<Tensor, Tensor>
{
    readonly Linear wi_0;
    readonly Linear wi_1;
    readonly Linear wo;
    readonly string _act;

    public T5DenseGatedActDense(Configs.T5Config c) : base(nameof(T5DenseGatedActDense))
    {
        wi_0 = Layers.Linear(c.DModel, c.DFf, hasBias: false);
        wi_1 = Layers.Linear(c.DModel, c.DFf, hasBias: false);
        wo = Layers.Linear(c.DFf, c.DModel, hasBias: false);
        _act = c.DenseActFn;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = Common.Activations.Apply(_act, wi_0.forward(x)) * wi_1.forward(x);
        return wo.forward(h.to_type(wo.weight!.dtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>wo(act(wi·x)): original T5 ("relu").</summary>
public sealed class T5DenseActDense : nn.Module<Tensor, Tensor>
{
    readonly Linear wi;
    readonly Linear wo;
    readonly string _act;

    public T5DenseActDense(Configs.T5Config c) : base(nameof(T5DenseActDense))
    {
        wi = Layers.Linear(c.DModel, c.DFf, hasBias: false);
        wo = Layers.Linear(c.DFf, c.DModel, hasBias: false);
        _act = c.DenseActFn;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = Common.Activations.Apply(_act, wi.forward(x));
        return wo.forward(h.to_type(wo.weight!.dtype)).MoveToOuterDisposeScope();
    }
}
