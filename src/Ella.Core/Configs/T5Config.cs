using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ella.Configs;

/// <summary>transformers' <c>T5Config</c> (the encoder fields); JSON names are the config.json keys.</summary>
public sealed class T5Config
{
    [JsonPropertyName("vocab_size")] public int VocabSize { get; set; } = 32128;
    [JsonPropertyName("d_model")] public int DModel { get; set; } = 512;
    [JsonPropertyName("d_kv")] public int DKv { get; set; } = 64;
    [JsonPropertyName("d_ff")] public int DFf { get; set; } = 2048;
    [JsonPropertyName("num_layers")] public int NumLayers { get; set; } = 6;
    [JsonPropertyName("num_heads")] public int NumHeads { get; set; } = 8;
    [JsonPropertyName("relative_attention_num_buckets")] public int RelativeAttentionNumBuckets { get; set; } = 32;
    [JsonPropertyName("relative_attention_max_distance")] public int RelativeAttentionMaxDistance { get; set; } = 128;
    [JsonPropertyName("layer_norm_epsilon")] public double LayerNormEpsilon { get; set; } = 1e-6;
    [JsonPropertyName("feed_forward_proj")] public string FeedForwardProj { get; set; } = "relu";
    [JsonPropertyName("model_type")] public string? ModelType { get; set; } = "t5";
    [JsonPropertyName("pad_token_id")] public int PadTokenId { get; set; }
    [JsonPropertyName("eos_token_id")] public int EosTokenId { get; set; } = 1;

    /// <summary>"gated-gelu" → gated with gelu_new (tanh approximation), as transformers maps it.</summary>
    [JsonIgnore] public bool IsGatedAct => FeedForwardProj.Split('-')[0] == "gated" && FeedForwardProj.Split('-').Length > 1;
    [JsonIgnore] public string DenseActFn => FeedForwardProj == "gated-gelu" ? "gelu_new" : FeedForwardProj.Split('-')[^1];

    /// <summary>google/flan-t5-xl (the encoder ELLA uses).</summary>
    public static T5Config FlanT5Xl() => new()
    {
        VocabSize = 32128, DModel = 2048, DKv = 64, DFf = 5120, NumLayers = 24, NumHeads = 32,
        FeedForwardProj = "gated-gelu", LayerNormEpsilon = 1e-6,
    };

    public void Validate(string source)
    {
        if (ModelType is not (null or "t5" or "mt5" or "umt5"))
            throw new EllaException($"{source}: model_type '{ModelType}' is not a T5 model");
        foreach (var (k, v) in new[] { ("vocab_size", VocabSize), ("d_model", DModel), ("d_kv", DKv), ("d_ff", DFf), ("num_layers", NumLayers), ("num_heads", NumHeads), ("relative_attention_num_buckets", RelativeAttentionNumBuckets) })
            if (v <= 0) throw new EllaException($"{source}: {k} must be positive, got {v}");
        foreach (var (k, v) in new[] { ("vocab_size", VocabSize), ("d_model", DModel), ("d_kv", DKv), ("d_ff", DFf), ("num_heads", NumHeads), ("relative_attention_num_buckets", RelativeAttentionNumBuckets), ("relative_attention_max_distance", RelativeAttentionMaxDistance) })
            ConfigChecks.Size(source, k, v);
        ConfigChecks.Count(source, "num_layers", NumLayers);
        if (!double.IsFinite(LayerNormEpsilon) || LayerNormEpsilon <= 0) throw new EllaException($"{source}: layer_norm_epsilon must be a positive number, got {LayerNormEpsilon}");
        if (FeedForwardProj == null) throw new EllaException($"{source}: feed_forward_proj must be a string");
        if (PadTokenId < 0 || PadTokenId >= VocabSize || EosTokenId < 0 || EosTokenId >= VocabSize) throw new EllaException($"{source}: pad_token_id and eos_token_id must be inside the vocabulary (vocab_size {VocabSize})");
        var parts = FeedForwardProj.Split('-');
        if (parts.Length > 2 || (parts.Length == 2 && parts[0] != "gated"))
            throw new EllaException($"{source}: feed_forward_proj '{FeedForwardProj}' must be '{{act}}' or 'gated-{{act}}'");
        if (DenseActFn is not ("relu" or "gelu" or "gelu_new" or "gelu_pytorch_tanh" or "silu" or "quick_gelu"))
            throw new EllaException($"{source}: activation '{DenseActFn}' (feed_forward_proj '{FeedForwardProj}') is not supported");
    }

    public static T5Config Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new EllaException($"{file}: T5 config.json not found");
        try
        {
            var cfg = ConfigChecks.Deserialize<T5Config>(file, File.ReadAllText(file), "T5 config");
            cfg.Validate(file);
            return cfg;
        }
        catch (JsonException e) { throw new EllaException($"{file}: not a valid T5 config ({e.Message})", e); }
    }
}
