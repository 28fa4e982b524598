using Ella.Modules.Common;
using Ella.Configs;
using Ella.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Clip;

/// <summary>Outputs of <see cref="ClipTextModel"/>.</summary>
public sealed class ClipTextOutput : IDisposable
{
    /// <summary>[B, L, hidden] after final_layer_norm: SD1.5's encoder_hidden_states.</summary>
    public required Tensor LastHiddenState { get; init; }
    /// <summary>[B, hidden]: last_hidden_state at the end-token position.</summary>
    public required Tensor PoolerOutput { get; init; }
    /// <summary>Embeddings, then each layer's output, all before final_layer_norm; null unless asked.</summary>
    public IReadOnlyList<Tensor>? HiddenStates { get; init; }

    public void Dispose()
    {
        LastHiddenState.Dispose();
        PoolerOutput.Dispose();
        if (HiddenStates != null) foreach (var h in HiddenStates) h.Dispose();
    }
}

/// <summary>
/// transformers' <c>CLIPTextModel</c> with its parameter names (<c>text_model.*</c>): token + position embeddings,
/// pre-LN transformer layers under a causal mask, final LayerNorm, pooled output at the end token.
/// </summary>
public sealed class ClipTextModel : nn.Module<Tensor, Tensor>
{
    readonly ClipTextTransformer text_model;

    public ClipTextConfig Config { get; }

    public ClipTextModel(ClipTextConfig config) : base(nameof(ClipTextModel))
    {
        config.Validate("CLIP text config");
        Config = config;
        text_model = new ClipTextTransformer(config);
        RegisterComponents();
    }

    /// <summary>Last hidden state, no padding mask (the SD1.5 pipeline passes none).</summary>
    public override Tensor forward(Tensor inputIds)
    {
        using var o = Encode(inputIds);
        return o.LastHiddenState.alias();
    }

    public ClipTextOutput Encode(Tensor inputIds, Tensor? attentionMask = null, bool outputHiddenStates = false) =>
        text_model.Run(inputIds, attentionMask, outputHiddenStates);

    /// <summary>Buffers some files carry that are not weights (older transformers saved position_ids).</summary>
    public static readonly string[] OptionalKeys = ["text_model.embeddings.position_ids"];

    /// <summary>Loads an HF CLIPTextModel folder (e.g. SD1.5's text_encoder/).</summary>
    public static ClipTextModel FromPretrained(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(folder)) throw new EllaException($"{folder}: CLIP text encoder folder not found");
        var config = ClipTextConfig.Load(folder);
        using var source = Checkpoint.Open(folder);
        return Common.Pretrained.Load(() => new ClipTextModel(config), source, dtype, device, "CLIP text encoder", OptionalKeys);
    }
}

public sealed class ClipTextTransformer : nn.Module<Tensor, Tensor>
{
    readonly ClipTextEmbeddings embeddings;
    readonly ClipEncoder encoder;
    readonly LayerNorm final_layer_norm;
    readonly ClipTextConfig _config;

    public ClipTextTransformer(ClipTextConfig config) : base(nameof(ClipTextTransformer))
    {
        _config = config;
        embeddings = new ClipTextEmbeddings(config);
        encoder = new ClipEncoder(config);
        final_layer_norm = Layers.LayerNorm(config.HiddenSize, config.LayerNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor inputIds)
    {
        using var o = Run(inputIds, null, false);
        return o.LastHiddenState.alias();
    }

    public ClipTextOutput Run(Tensor inputIds, Tensor? attentionMask, bool outputHiddenStates)
    {
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], l = inputIds.shape[1];
        if (l > _config.MaxPositionEmbeddings)
            throw new EllaException($"CLIP text encoder: {l} tokens exceed max_position_embeddings {_config.MaxPositionEmbeddings}");
        var hidden = embeddings.forward(inputIds);
        Tensor? mask = null;
        if (attentionMask is not null)
        {
            // Causal mask plus padded keys, additive, in the activations' dtype.
            var causal = ones(l, l, dtype: ScalarType.Bool, device: hidden.device).tril();
            var keep = causal.unsqueeze(0).unsqueeze(0).logical_and(attentionMask.to_type(ScalarType.Bool).reshape(b, 1, 1, l));
            mask = zeros(b, 1, l, l, dtype: hidden.dtype, device: hidden.device).masked_fill(keep.logical_not(), Common.MaskValue.Min(hidden.dtype));
        }
        var states = outputHiddenStates ? new List<Tensor>() : null;
        hidden = encoder.Run(hidden, mask, states);
        var last = final_layer_norm.forward(hidden);
        // End-token position: argmax of the ids under the legacy config (eos_token_id 2, as SD1.5's), else the first eos.
        var eosIndex = _config.EosTokenId == 2
            ? inputIds.to_type(ScalarType.Int64).argmax(-1)
            : inputIds.eq(_config.EosTokenId).to_type(ScalarType.Int32).argmax(-1);
        var pooled = last[arange(b, device: last.device), eosIndex.to(last.device)];
        return new ClipTextOutput
        {
            LastHiddenState = last.DetachFromDisposeScope(),
            PoolerOutput = pooled.DetachFromDisposeScope(),
            HiddenStates = states?.Select(s => s.DetachFromDisposeScope()).ToList(),
        };
    }
}

public sealed class ClipTextEmbeddings : nn.Module<Tensor, Tensor>
{
    readonly Embedding token_embedding;
    readonly Embedding position_embedding;

    public ClipTextEmbeddings(ClipTextConfig c) : base(nameof(ClipTextEmbeddings))
    {
        token_embedding = Layers.Embedding(c.VocabSize, c.HiddenSize);
        position_embedding = Layers.Embedding(c.MaxPositionEmbeddings, c.HiddenSize);
        RegisterComponents();
    }

    public override Tensor forward(Tensor inputIds)
    {
        using var positions = arange(inputIds.shape[1], dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0);
        using var tok = token_embedding.forward(inputIds);
        using var pos = position_embedding.forward(positions);
        return tok + pos;
    }
}

public sealed class ClipEncoder : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<ClipEncoderLayer> layers;

    public ClipEncoder(ClipTextConfig c) : base(nameof(ClipEncoder))
    {
        layers = nn.ModuleList(Enumerable.Range(0, c.NumHiddenLayers).Select(_ => new ClipEncoderLayer(c)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden) => Run(hidden, null, null);

    /// <param name="mask">additive [B,1,L,L] mask, or null for the plain causal mask</param>
    /// <param name="states">receives the input and each layer's output when not null</param>
    public Tensor Run(Tensor hidden, Tensor? mask, List<Tensor>? states)
    {
        states?.Add(hidden);
        foreach (var layer in layers)
        {
            hidden = layer.forward(hidden, mask);
            states?.Add(hidden);
        }
        return hidden;
    }
}

public sealed class ClipEncoderLayer : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly ClipAttention self_attn;
    readonly LayerNorm layer_norm1;
    readonly ClipMlp mlp;
    readonly LayerNorm layer_norm2;

    public ClipEncoderLayer(ClipTextConfig c) : base(nameof(ClipEncoderLayer))
    {
        self_attn = new ClipAttention(c);
        layer_norm1 = Layers.LayerNorm(c.HiddenSize, c.LayerNormEps);
        mlp = new ClipMlp(c);
        layer_norm2 = Layers.LayerNorm(c.HiddenSize, c.LayerNormEps);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var h = hidden + self_attn.forward(layer_norm1.forward(hidden), mask);
        h = h + mlp.forward(layer_norm2.forward(h));
        return h.MoveToOuterDisposeScope();
    }
}

public sealed class ClipAttention : nn.Module<Tensor, Tensor?, Tensor>
{
    // Declared in transformers' order (k, v, q, out) so state_dict lists keys as the checkpoints do.
    readonly Linear k_proj;
    readonly Linear v_proj;
    readonly Linear q_proj;
    readonly Linear out_proj;
    readonly int _heads;
    readonly int _headDim;

    public ClipAttention(ClipTextConfig c) : base(nameof(ClipAttention))
    {
        k_proj = Layers.Linear(c.HiddenSize, c.HiddenSize);
        v_proj = Layers.Linear(c.HiddenSize, c.HiddenSize);
        q_proj = Layers.Linear(c.HiddenSize, c.HiddenSize);
        out_proj = Layers.Linear(c.HiddenSize, c.HiddenSize);
        _heads = c.NumAttentionHeads;
        _headDim = c.HiddenSize / c.NumAttentionHeads;
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        long b = hidden.shape[0], l = hidden.shape[1];
        Tensor Heads(Tensor t) => t.view(b, l, _heads, _headDim).transpose(1, 2);
        var q = Heads(q_proj.forward(hidden));
        var k = Heads(k_proj.forward(hidden));
        var v = Heads(v_proj.forward(hidden));
        var attn = mask is null
            ? Common.AttentionKernel.Sdpa(q, k, v, causal: true)
            : Common.AttentionKernel.Sdpa(q, k, v, mask);
        return out_proj.forward(attn.transpose(1, 2).reshape(b, l, _heads * _headDim)).MoveToOuterDisposeScope();
    }
}

public sealed class ClipMlp : nn.Module<Tensor, Tensor>
{
    readonly Linear fc1;
    readonly Linear fc2;
    readonly string _act;

    public ClipMlp(ClipTextConfig c) : base(nameof(ClipMlp))
    {
        fc1 = Layers.Linear(c.HiddenSize, c.IntermediateSize);
        fc2 = Layers.Linear(c.IntermediateSize, c.HiddenSize);
        _act = c.HiddenAct;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var h = fc1.forward(x);
        using var a = Common.Activations.Apply(_act, h);
        return fc2.forward(a);
    }
}
