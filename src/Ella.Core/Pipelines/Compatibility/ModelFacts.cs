using System.Text.Json;
using Ella.Configs;
using Ella.Text;
using Ella.Weights;

namespace Ella.Pipelines.Compatibility;

/// <summary>One number of one model, with the file it was read from (for messages that name both files).</summary>
public readonly record struct Fact(int Value, string Source, string Key);

/// <summary>
/// The sizes that decide whether models fit together, read from config files and safetensors headers only: no
/// weights are read and nothing is allocated. A component that is absent, or whose config is missing, stays null (its
/// own loader reports that problem).
/// </summary>
public sealed record ModelFacts
{
    public Fact? UnetInChannels { get; init; }
    public Fact? UnetOutChannels { get; init; }
    public Fact? UnetCrossAttentionDim { get; init; }
    public Fact? VaeLatentChannels { get; init; }
    public Fact? ClipHiddenSize { get; init; }
    public Fact? ClipVocabSize { get; init; }
    public Fact? ClipMaxPositions { get; init; }
    public Fact? ClipTokenizerVocab { get; init; }
    public Fact? ClipTokenizerMaxLength { get; init; }
    public Fact? T5DModel { get; init; }
    public Fact? T5VocabSize { get; init; }
    public Fact? T5TokenizerVocab { get; init; }
    public Fact? ConnectorInputDim { get; init; }
    public Fact? ConnectorOutputWidth { get; init; }
    /// <summary>A display name of the T5 model (repo id when it lives in the Hugging Face cache, else the folder name).</summary>
    public string? T5Name { get; init; }

    /// <summary>Reads what <paramref name="options"/> names; throws <see cref="EllaException"/> for unreadable configs.</summary>
    public static ModelFacts Read(PipelineLoadOptions options)
    {
        var facts = new ModelFacts();
        facts = ReadStableDiffusion(facts, options);
        if (options.Ella != null && (File.Exists(options.Ella) || Directory.Exists(options.Ella)))
            facts = ReadConnector(facts, ModelLocator.EllaFile(options.Ella));
        if (options.T5 != null && Directory.Exists(options.T5))
            facts = ReadT5(facts, options.T5);
        return facts;
    }

    static ModelFacts ReadStableDiffusion(ModelFacts f, PipelineLoadOptions o)
    {
        string path = o.StableDiffusion;
        if (Directory.Exists(path))
        {
            string unet = Path.Combine(path, "unet", "config.json"), vae = Path.Combine(path, "vae", "config.json");
            if (File.Exists(unet))
            {
                var c = UNet2DConditionConfig.Load(unet);
                f = f with
                {
                    UnetInChannels = new(c.InChannels, unet, "in_channels"),
                    UnetOutChannels = new(c.OutChannels, unet, "out_channels"),
                    UnetCrossAttentionDim = new(c.CrossAttentionDim, unet, "cross_attention_dim"),
                };
            }
            if (File.Exists(vae)) f = f with { VaeLatentChannels = new(AutoencoderKLConfig.Load(vae).LatentChannels, vae, "latent_channels") };
            string text = Path.Combine(path, "text_encoder", "config.json");
            if (o.LoadClip && File.Exists(text))
            {
                var c = ClipTextConfig.Load(text);
                f = f with
                {
                    ClipHiddenSize = new(c.HiddenSize, text, "hidden_size"),
                    ClipVocabSize = new(c.VocabSize, text, "vocab_size"),
                    ClipMaxPositions = new(c.MaxPositionEmbeddings, text, "max_position_embeddings"),
                };
            }
            string? tokenizer = o.ClipTokenizer ?? Path.Combine(path, "tokenizer");
            if (o.LoadClip) f = ReadClipTokenizer(f, tokenizer);
            return f;
        }
        if (!File.Exists(path)) return f;
        using var source = Checkpoint.Open(path);
        if (!LdmCheckpointConverter.IsLdm(source)) return f;
        var (ucfg, _) = LdmCheckpointConverter.UNet(source);
        var (vcfg, _) = LdmCheckpointConverter.Vae(source);
        f = f with
        {
            UnetInChannels = new(ucfg.InChannels, path, "in_channels"),
            UnetOutChannels = new(ucfg.OutChannels, path, "out_channels"),
            UnetCrossAttentionDim = new(ucfg.CrossAttentionDim, path, "cross_attention_dim"),
            VaeLatentChannels = new(vcfg.LatentChannels, path, "latent_channels"),
        };
        if (o.LoadClip)
        {
            const string norm = "cond_stage_model.transformer.text_model.final_layer_norm.weight";
            if (source.Contains(norm)) f = f with { ClipHiddenSize = new((int)source.GetInfo(norm).Shape[0], path, "CLIP hidden size") };
            string? tok = o.ClipTokenizer ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "tokenizer");
            f = ReadClipTokenizer(f, tok);
        }
        return f;
    }

    static ModelFacts ReadClipTokenizer(ModelFacts f, string? folder)
    {
        string vocab = Path.Combine(folder ?? "", "vocab.json");
        if (folder == null || !File.Exists(vocab)) return f;
        // Counted, not loaded: the tokenizer itself is built once, by the pipeline.
        int tokens = 0;
        try
        {
            var reader = new Utf8JsonReader(File.ReadAllBytes(vocab));
            while (reader.Read())
                if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1) tokens++;
        }
        catch (JsonException e) { throw new EllaException($"{vocab}: not a JSON token → id map ({e.Message})", e); }
        int maxLength = ClipTokenizer.DefaultMaxLength;
        string cfg = Path.Combine(folder, "tokenizer_config.json");
        if (File.Exists(cfg))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(cfg));
                if (doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("model_max_length", out var m) && m.TryGetInt64(out long ml) && ml is > 0 and < 100000) maxLength = (int)ml;
            }
            catch (JsonException e) { throw new EllaException($"{cfg}: not valid JSON ({e.Message})", e); }
        }
        return f with
        {
            ClipTokenizerVocab = new(tokens, vocab, "tokens"),
            ClipTokenizerMaxLength = new(maxLength, cfg, "model_max_length"),
        };
    }

    static ModelFacts ReadConnector(ModelFacts f, string file)
    {
        using var source = Checkpoint.Open(file);
        var cfg = EllaConnectorConfig.Resolve(file, source);
        string where = EllaConnectorConfig.SideConfigPath(file) is { } side ? $"{file} (with {Path.GetFileName(side)})" : file;
        return f with
        {
            ConnectorInputDim = new(cfg.InputDim ?? cfg.Width, where, cfg.InputDim != null ? "input_dim" : "width"),
            ConnectorOutputWidth = new(cfg.ConditionWidth, where, cfg.OutputDim != null ? "output_dim" : "width"),
        };
    }

    static ModelFacts ReadT5(ModelFacts f, string folder)
    {
        string config = Path.Combine(folder, "config.json");
        if (!File.Exists(config)) return f;
        var cfg = T5Config.Load(config);
        f = f with
        {
            T5DModel = new(cfg.DModel, config, "d_model"),
            T5VocabSize = new(cfg.VocabSize, config, "vocab_size"),
            T5Name = DisplayName(folder, config),
        };
        if (File.Exists(Path.Combine(folder, "spiece.model")))
            f = f with { T5TokenizerVocab = new(T5Tokenizer.FromPretrained(folder).VocabSize, Path.Combine(folder, "spiece.model"), "pieces + extra_ids") };
        return f;
    }

    /// <summary>"google/flan-t5-large" for a Hugging Face cache snapshot, else <c>_name_or_path</c>, else the folder name.</summary>
    public static string DisplayName(string folder, string? config = null)
    {
        string full = Path.GetFullPath(folder).TrimEnd('/');
        foreach (var part in full.Split('/'))
            if (part.StartsWith("models--", StringComparison.Ordinal))
                return string.Join('/', part["models--".Length..].Split("--"));
        if (config != null)
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(config));
                if (doc.RootElement.TryGetProperty("_name_or_path", out var n) && n.ValueKind == JsonValueKind.String && n.GetString() is { Length: > 0 } s && !s.StartsWith('/'))
                    return s;
            }
            catch (JsonException) { }
        }
        return Path.GetFileName(full);
    }
}
