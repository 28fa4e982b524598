using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ella.Configs;

/// <summary>transformers' <c>CLIPTextConfig</c>; JSON names are the config.json keys (SD1.5's text_encoder/config.json).</summary>
public sealed class ClipTextConfig
{
    [JsonPropertyName("vocab_size")] public int VocabSize { get; set; } = 49408;
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; set; } = 512;
    [JsonPropertyName("intermediate_size")] public int IntermediateSize { get; set; } = 2048;
    [JsonPropertyName("num_hidden_layers")] public int NumHiddenLayers { get; set; } = 12;
    [JsonPropertyName("num_attention_heads")] public int NumAttentionHeads { get; set; } = 8;
    [JsonPropertyName("max_position_embeddings")] public int MaxPositionEmbeddings { get; set; } = 77;
    [JsonPropertyName("hidden_act")] public string HiddenAct { get; set; } = "quick_gelu";
    [JsonPropertyName("layer_norm_eps")] public double LayerNormEps { get; set; } = 1e-5;
    [JsonPropertyName("bos_token_id")] public int BosTokenId { get; set; } = 49406;
    [JsonPropertyName("eos_token_id")] public int EosTokenId { get; set; } = 49407;
    [JsonPropertyName("pad_token_id")] public int PadTokenId { get; set; } = 1;
    [JsonPropertyName("projection_dim")] public int ProjectionDim { get; set; } = 512;
    [JsonPropertyName("model_type")] public string? ModelType { get; set; }

    /// <summary>openai/clip-vit-large-patch14's text tower (SD1.5's text_encoder).</summary>
    public static ClipTextConfig ClipVitL14() => new()
    {
        HiddenSize = 768, IntermediateSize = 3072, NumHiddenLayers = 12, NumAttentionHeads = 12, ProjectionDim = 768,
        BosTokenId = 0, EosTokenId = 2, PadTokenId = 1,
    };

    public void Validate(string source)
    {
        ConfigChecks.Size(source, "vocab_size", VocabSize);
        ConfigChecks.Size(source, "hidden_size", HiddenSize);
        ConfigChecks.Size(source, "intermediate_size", IntermediateSize);
        ConfigChecks.Count(source, "num_hidden_layers", NumHiddenLayers);
        ConfigChecks.Size(source, "num_attention_heads", NumAttentionHeads);
        ConfigChecks.Size(source, "max_position_embeddings", MaxPositionEmbeddings);
        if (!double.IsFinite(LayerNormEps) || LayerNormEps <= 0) throw new EllaException($"{source}: layer_norm_eps must be a positive number, got {LayerNormEps}");
        foreach (var (k, v) in new[] { ("bos_token_id", BosTokenId), ("eos_token_id", EosTokenId), ("pad_token_id", PadTokenId) })
            if (v < 0 || v >= VocabSize) throw new EllaException($"{source}: {k} {v} is outside the vocabulary (vocab_size {VocabSize})");
        if (HiddenAct == null) throw new EllaException($"{source}: hidden_act must be a string");
        if (ModelType is not (null or "clip_text_model" or "clip"))
            throw new EllaException($"{source}: model_type '{ModelType}' is not a CLIP text model");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new EllaException($"{source}: hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}");
        if (HiddenAct is not ("quick_gelu" or "gelu" or "gelu_new" or "relu"))
            throw new EllaException($"{source}: hidden_act '{HiddenAct}' is not supported");
    }

    public static ClipTextConfig Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new EllaException($"{file}: CLIP text config.json not found");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(file));
            // A full CLIPModel config nests the text tower under text_config.
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new EllaException($"{file}: not a valid CLIP text config (expected a JSON object, found {doc.RootElement.ValueKind})");
            var root = doc.RootElement.TryGetProperty("text_config", out var tc) && tc.ValueKind == JsonValueKind.Object ? tc : doc.RootElement;
            var cfg = root.Deserialize<ClipTextConfig>() ?? throw new EllaException($"{file}: not a valid CLIP text config");
            cfg.Validate(file);
            return cfg;
        }
        catch (JsonException e) { throw new EllaException($"{file}: not a valid CLIP text config ({e.Message})", e); }
    }
}
