using Ella.Modules.Common;
using Ella.Configs;
using Ella.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.T5;

/// <summary>Outputs of <see cref="T5EncoderModel"/>.</summary>
public sealed class T5EncoderOutput : IDisposable
{
    /// <summary>[B, L, d_model] after the final RMS norm: ELLA's text features.</summary>
    public required Tensor LastHiddenState { get; init; }
    /// <summary>transformers' output_hidden_states: the input of each block, then the final output; null unless asked.</summary>
    public IReadOnlyList<Tensor>? HiddenStates { get; init; }

    public void Dispose()
    {
        LastHiddenState.Dispose();
        if (HiddenStates != null) foreach (var h in HiddenStates) h.Dispose();
    }
}

/// <summary>
/// transformers' <c>T5EncoderModel</c> (encoder stack only), with its parameter names: <c>shared</c>, tied to
/// <c>encoder.embed_tokens</c>; <c>encoder.block.N.layer.{0,1}</c>; <c>encoder.final_layer_norm</c>.
/// </summary>
public sealed class T5EncoderModel : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly Embedding shared;
    readonly T5Stack encoder;

    public T5Config Config { get; }

    public T5EncoderModel(T5Config config) : base(nameof(T5EncoderModel))
    {
        config.Validate("T5 config");
        Config = config;
        shared = Layers.Embedding(config.VocabSize, config.DModel);
        encoder = new T5Stack(config, shared);
        RegisterComponents();
    }

    /// <summary>Last hidden state [B, L, d_model].</summary>
    public override Tensor forward(Tensor inputIds, Tensor? attentionMask)
    {
        using var output = Encode(inputIds, attentionMask);
        return output.LastHiddenState.alias();
    }

    public T5EncoderOutput Encode(Tensor inputIds, Tensor? attentionMask, bool outputHiddenStates = false) =>
        encoder.Run(inputIds, attentionMask, outputHiddenStates);

    /// <summary>
    /// As transformers lists it: the tied token embedding appears twice, as <c>shared.weight</c> and
    /// <c>encoder.embed_tokens.weight</c> (TorchSharp lists a shared tensor once).
    /// </summary>
    public override Dictionary<string, Tensor> state_dict(Dictionary<string, Tensor>? destination = null, string? prefix = null)
    {
        var own = base.state_dict(null, prefix);
        destination ??= new Dictionary<string, Tensor>();
        string p = prefix is { Length: > 0 } ? prefix + "." : "";
        foreach (var (k, v) in own)
        {
            destination[k] = v;
            if (k == p + "shared.weight") destination[p + "encoder.embed_tokens.weight"] = v;
        }
        return destination;
    }

    /// <summary>Keys a T5 checkpoint may hold that the encoder does not use (the decoder, the LM head).</summary>
    public static bool IsSkippedKey(string key) => key.StartsWith("decoder.", StringComparison.Ordinal) || key == "lm_head.weight";

    /// <summary>
    /// Exposes a checkpoint in the encoder's key layout: decoder.* and lm_head.weight are dropped; the token embedding is
    /// read from shared.weight, or from encoder.embed_tokens.weight when that is all the file has.
    /// </summary>
    public static ITensorSource EncoderView(ITensorSource source)
    {
        const string Shared = "shared.weight", Embed = "encoder.embed_tokens.weight";
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in source.Names)
            if (!IsSkippedKey(name)) map[name] = name;
        string? embedding = source.Contains(Shared) ? Shared : source.Contains(Embed) ? Embed : null;
        if (embedding != null)
        {
            map[Shared] = embedding;
            map[Embed] = embedding;
        }
        return new KeyMappedTensorSource(source, map);
    }

    /// <summary>
    /// Loads a Hugging Face T5 folder (config.json plus model.safetensors or a sharded index), or the encoder of a
    /// T5ForConditionalGeneration checkpoint such as google/flan-t5-xl.
    /// </summary>
    public static T5EncoderModel FromPretrained(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(folder)) throw new EllaException($"{folder}: T5 model folder not found");
        var config = T5Config.Load(folder);
        using var source = Checkpoint.Open(folder);
        using var view = EncoderView(source);
        return Common.Pretrained.Load(() => new T5EncoderModel(config), view, dtype, device, "T5 encoder");
    }
}

/// <summary>The encoder stack (<c>encoder.*</c>).</summary>
public sealed class T5Stack : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly Embedding embed_tokens;
    readonly ModuleList<T5Block> block;
    readonly T5LayerNorm final_layer_norm;

    public T5Stack(T5Config config, Embedding sharedEmbedding) : base(nameof(T5Stack))
    {
        embed_tokens = sharedEmbedding;
        block = nn.ModuleList(Enumerable.Range(0, config.NumLayers).Select(i => new T5Block(config, hasRelativeAttentionBias: i == 0)).ToArray());
        final_layer_norm = new T5LayerNorm(config.DModel, config.LayerNormEpsilon);
        RegisterComponents();
    }

    public override Tensor forward(Tensor inputIds, Tensor? attentionMask)
    {
        using var o = Run(inputIds, attentionMask, false);
        return o.LastHiddenState.alias();
    }

    public T5EncoderOutput Run(Tensor inputIds, Tensor? attentionMask, bool outputHiddenStates)
    {
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], l = inputIds.shape[1];
        var hidden = embed_tokens.forward(inputIds);
        var dtype = hidden.dtype;
        // Position bias of block 0 plus the padding mask (masked keys get the dtype's most negative value).
        var bias = block[0].Attention.ComputeBias(l, l, hidden.device);
        if (attentionMask is not null)
        {
            var additive = (1.0 - attentionMask.to_type(dtype).reshape(b, 1, 1, l)) * Common.MaskValue.Min(dtype);
            bias = bias.to_type(dtype) + additive;
        }
        else bias = bias.to_type(dtype).expand(b, -1, -1, -1);
        var states = outputHiddenStates ? new List<Tensor>() : null;
        foreach (var blk in block)
        {
            states?.Add(hidden.DetachFromDisposeScope());
            hidden = blk.forward(hidden, bias);
        }
        hidden = final_layer_norm.forward(hidden);
        states?.Add(hidden.alias().DetachFromDisposeScope());
        return new T5EncoderOutput { LastHiddenState = hidden.DetachFromDisposeScope(), HiddenStates = states };
    }
}
