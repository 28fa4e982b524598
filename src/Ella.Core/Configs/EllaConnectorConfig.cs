using System.Text.Json;
using System.Text.Json.Serialization;
using Ella.Weights;

namespace Ella.Configs;

/// <summary>
/// Constructor arguments of the authors' <c>ELLA</c> class; JSON names are those argument names. The defaults are the
/// released SD1.5 connector (ella-sd1.5-tsc-t5xl): FLAN-T5-XL features (2048) → 64 tokens of width 768.
/// </summary>
public sealed class EllaConnectorConfig
{
    /// <summary>
    /// The connector design (paper Tab. 6): <c>tsc</c> (the released Timestep-Aware Semantic Connector), <c>mlp</c>,
    /// <c>resampler</c> (no timestep) or <c>adaln-zero</c> (TSC with zero-initialised residual gates).
    /// </summary>
    [JsonPropertyName("connector_type")] public string ConnectorType { get; set; } = "tsc";
    [JsonPropertyName("time_channel")] public int TimeChannel { get; set; } = 320;
    [JsonPropertyName("time_embed_dim")] public int TimeEmbedDim { get; set; } = 768;
    [JsonPropertyName("act_fn")] public string ActFn { get; set; } = "silu";
    /// <summary>Output width of the timestep embedding's second linear; null = time_embed_dim.</summary>
    [JsonPropertyName("out_dim")] public int? OutDim { get; set; }
    [JsonPropertyName("width")] public int Width { get; set; } = 768;
    [JsonPropertyName("layers")] public int Layers { get; set; } = 6;
    [JsonPropertyName("heads")] public int Heads { get; set; } = 8;
    [JsonPropertyName("num_latents")] public int NumLatents { get; set; } = 64;
    /// <summary>Text feature width; null = no proj_in (features already have <see cref="Width"/>).</summary>
    [JsonPropertyName("input_dim")] public int? InputDim { get; set; } = 2048;
    /// <summary>Optional resampler proj_out width (not used by the released connectors).</summary>
    [JsonPropertyName("output_dim")] public int? OutputDim { get; set; }

    /// <summary>Width of the condition tokens the UNet receives.</summary>
    [JsonIgnore] public int ConditionWidth => OutputDim ?? Width;

    /// <summary>The key under which checkpoints written by EllaSharp keep this config in <c>__metadata__</c>.</summary>
    public const string MetadataKey = "ella_config";

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.Never };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public EllaConnectorConfig Clone() => JsonSerializer.Deserialize<EllaConnectorConfig>(ToJson())!;

    public void Validate(string source)
    {
        void Positive(string key, int v) { if (v <= 0) throw new EllaException($"{source}: {key} must be positive, got {v}"); }
        Positive("time_channel", TimeChannel);
        Positive("time_embed_dim", TimeEmbedDim);
        Positive("width", Width);
        Positive("layers", Layers);
        Positive("heads", Heads);
        Positive("num_latents", NumLatents);
        if (InputDim is { } i) Positive("input_dim", i);
        if (OutDim is { } o) Positive("out_dim", o);
        if (OutputDim is { } p) Positive("output_dim", p);
        if (!Modules.Ella.Connectors.Types.Contains(ConnectorType))
            throw new EllaException($"{source}: connector_type '{ConnectorType}' is not known (choose one of: {string.Join(", ", Modules.Ella.Connectors.Types)})");
        if (Width % Heads != 0) throw new EllaException($"{source}: width {Width} is not divisible by heads {Heads}");
        foreach (var (k, v) in new[] { ("time_channel", TimeChannel), ("time_embed_dim", TimeEmbedDim), ("width", Width), ("heads", Heads), ("num_latents", NumLatents), ("input_dim", InputDim ?? 1), ("out_dim", OutDim ?? 1), ("output_dim", OutputDim ?? 1) })
            ConfigChecks.Size(source, k, v);
        ConfigChecks.Count(source, "layers", Layers);
        if (ActFn == null) throw new EllaException($"{source}: act_fn must be a string");
    }

    /// <summary>
    /// Every size the tensors reveal. The head count cannot be seen in the weights, so it stays at the released value, 8.
    /// </summary>
    public static EllaConnectorConfig InferFromTensors(ITensorSource source)
    {
        // The paper's timestep-free variants (written by EllaSharp, which also stores the config in the metadata).
        if (!source.Contains("time_embedding.linear_1.weight"))
        {
            if (source.Contains("linear_1.weight") && source.Contains("linear_2.weight"))
            {
                var w1 = source.GetInfo("linear_1.weight");
                return new EllaConnectorConfig { ConnectorType = "mlp", Width = (int)w1.Shape[0], InputDim = (int)w1.Shape[1], Layers = 1 };
            }
            if (source.Contains("latents") && source.Contains("perceiver_blocks.0.attn.in_proj_weight"))
            {
                var lat0 = source.GetInfo("latents");
                int blocks = 0;
                while (source.Contains($"perceiver_blocks.{blocks}.attn.in_proj_weight")) blocks++;
                return new EllaConnectorConfig
                {
                    ConnectorType = "resampler", NumLatents = (int)lat0.Shape[0], Width = (int)lat0.Shape[1], Layers = blocks,
                    InputDim = source.Contains("proj_in.weight") ? (int)source.GetInfo("proj_in.weight").Shape[1] : null,
                };
            }
        }

        TensorInfo Need(string key) => source.Contains(key)
            ? source.GetInfo(key)
            : throw new CheckpointException($"{source.Path}: not an ELLA connector checkpoint: tensor '{key}' is missing");
        var l1 = Need("time_embedding.linear_1.weight");
        var l2 = Need("time_embedding.linear_2.weight");
        var lat = Need("connector.latents");
        if (l1.Shape.Length != 2 || l2.Shape.Length != 2 || lat.Shape.Length != 2)
            throw new CheckpointException($"{source.Path}: ELLA tensors have unexpected ranks");
        int layers = 0;
        while (source.Contains($"connector.perceiver_blocks.{layers}.attn.in_proj_weight")) layers++;
        var cfg = new EllaConnectorConfig
        {
            TimeChannel = (int)l1.Shape[1],
            TimeEmbedDim = (int)l1.Shape[0],
            OutDim = l2.Shape[0] == l1.Shape[0] ? null : (int)l2.Shape[0],
            NumLatents = (int)lat.Shape[0],
            Width = (int)lat.Shape[1],
            Layers = layers,
            InputDim = source.Contains("connector.proj_in.weight") ? (int)source.GetInfo("connector.proj_in.weight").Shape[1] : null,
            OutputDim = source.Contains("connector.proj_out.0.weight") ? (int)source.GetInfo("connector.proj_out.0.weight").Shape[0] : null,
            ConnectorType = source.Contains("connector.perceiver_blocks.0.gate.weight") ? "adaln-zero" : "tsc",
        };
        return cfg;
    }

    /// <summary>
    /// The config for a connector checkpoint: sizes inferred from the tensors, then the config stored in the file's
    /// metadata (written by EllaSharp), then a JSON file beside it (<c>&lt;base name&gt;.json</c>, else
    /// <c>ella_config.json</c> in the same folder), each overriding only the fields it names.
    /// </summary>
    public static EllaConnectorConfig Resolve(string checkpointPath, ITensorSource source)
    {
        var cfg = InferFromTensors(source);
        if (source.Metadata.TryGetValue(MetadataKey, out var meta)) cfg = Overlay(cfg, meta, $"{checkpointPath} (__metadata__.{MetadataKey})");
        string? side = SideConfigPath(checkpointPath);
        if (side != null) cfg = Overlay(cfg, File.ReadAllText(side), side);
        cfg.Validate(side ?? checkpointPath);
        return cfg;
    }

    /// <summary>The optional JSON config that sits beside a checkpoint, if any.</summary>
    public static string? SideConfigPath(string checkpointPath)
    {
        if (Directory.Exists(checkpointPath))
        {
            string inFolder = Path.Combine(checkpointPath, "ella_config.json");
            return File.Exists(inFolder) ? inFolder : null;
        }
        string dir = Path.GetDirectoryName(Path.GetFullPath(checkpointPath))!;
        string own = Path.Combine(dir, Path.GetFileNameWithoutExtension(checkpointPath) + ".json");
        if (File.Exists(own)) return own;
        string shared = Path.Combine(dir, "ella_config.json");
        return File.Exists(shared) ? shared : null;
    }

    /// <summary>Applies the fields present in <paramref name="json"/> on top of <paramref name="baseConfig"/>.</summary>
    public static EllaConnectorConfig Overlay(EllaConnectorConfig baseConfig, string json, string source)
    {
        JsonElement root;
        try
        {
            using var doc = JsonDocument.Parse(json);
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new EllaException($"{source}: not valid JSON ({e.Message})", e);
        }
        if (root.ValueKind != JsonValueKind.Object) throw new EllaException($"{source}: expected a JSON object");
        var known = typeof(EllaConnectorConfig).GetProperties()
            .Select(p => p.GetCustomAttributes(typeof(JsonPropertyNameAttribute), false).OfType<JsonPropertyNameAttribute>().FirstOrDefault()?.Name)
            .Where(n => n != null).ToHashSet();
        foreach (var p in root.EnumerateObject())
            if (!known.Contains(p.Name) && !p.Name.StartsWith('_'))
                throw new EllaException($"{source}: unknown key '{p.Name}' (known: {string.Join(", ", known)})");
        var merged = JsonSerializer.SerializeToNode(baseConfig)!.AsObject();
        foreach (var p in root.EnumerateObject())
            if (!p.Name.StartsWith('_')) merged[p.Name] = System.Text.Json.Nodes.JsonNode.Parse(p.Value.GetRawText());
        try
        {
            return merged.Deserialize<EllaConnectorConfig>()!;
        }
        catch (JsonException e)
        {
            throw new EllaException($"{source}: a value has the wrong type ({e.Message})", e);
        }
    }
}
