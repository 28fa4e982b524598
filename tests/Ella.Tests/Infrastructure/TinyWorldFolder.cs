using System.Text.Json;
using Ella.Benchmarks;
using Ella.Configs;
using Ella.Modules.Clip;
using Ella.Modules.Ella;
using Ella.Modules.UNet;
using Ella.Modules.Vae;
using Ella.Pipelines;
using static TorchSharp.torch;

namespace Ella.Tests.Infrastructure;

/// <summary>
/// A tiny random stand-in for the shapes-world model (WORLD_LAYOUT: <c>models/shapes-world/</c>) in a temporary folder:
/// vae/ (3 blocks: downscale 4), unet/ (sample_size 16, cross_attention_dim 32), text_encoder/ (a 1-layer CLIP, 32 wide),
/// tokenizer/ (the real CLIP vocabulary from tests/data), scheduler/, model_index.json, and ella/connector.safetensors
/// (a TSC reading 384-wide features, metadata <c>text_encoder</c> = the kind given). So the default size is 16 × 4 = 64.
/// <see cref="AsDefault"/> points <c>ELLA_WORLD_MODEL</c> at it and clears the model variables for a test.
/// </summary>
public sealed class TinyWorldFolder : IDisposable
{
    public const int CrossAttentionDim = 32;
    public const int SampleSize = 16;
    public const int VaeFactor = 4;

    public string Root { get; } = Directory.CreateTempSubdirectory("ella-world-").FullName;
    /// <summary>The world folder (what <c>ELLA_WORLD_MODEL</c> names).</summary>
    public string Folder { get; }
    public string Connector => Path.Combine(Folder, "ella", "connector.safetensors");

    static readonly object SeedGate = new();

    /// <param name="textEncoder">the connector's text_encoder metadata (null: none written)</param>
    public TinyWorldFolder(string? textEncoder = "minilm", bool withConnector = true)
    {
        Folder = Path.Combine(Root, "models", "shapes-world");
        Directory.CreateDirectory(Folder);
        File.WriteAllText(Path.Combine(Folder, WorldDefaultModel.MarkerFile), """{"_class_name": "StableDiffusionPipeline", "world": "shapes"}""");
        var unet = new UNet2DConditionConfig
        {
            SampleSize = SampleSize, BlockOutChannels = [32, 64], LayersPerBlock = 1, CrossAttentionDim = CrossAttentionDim,
            DownBlockTypes = ["CrossAttnDownBlock2D", "DownBlock2D"], UpBlockTypes = ["UpBlock2D", "CrossAttnUpBlock2D"],
            AttentionHeadDim = JsonSerializer.SerializeToElement(4),
        };
        var vae = new AutoencoderKLConfig
        {
            BlockOutChannels = [32, 32, 32], LayersPerBlock = 1, SampleSize = SampleSize * VaeFactor,
            DownBlockTypes = ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"], UpBlockTypes = ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        };
        var clip = new ClipTextConfig { HiddenSize = CrossAttentionDim, IntermediateSize = 64, NumHiddenLayers = 1, NumAttentionHeads = 4, ProjectionDim = CrossAttentionDim, ModelType = "clip_text_model" };
        Write("unet", "diffusion_pytorch_model.safetensors", unet, () => new UNet2DConditionModel(unet), 1);
        Write("vae", "diffusion_pytorch_model.safetensors", vae, () => new AutoencoderKL(vae), 2);
        Write("text_encoder", "model.safetensors", clip, () => new ClipTextModel(clip), 3, k => k.EndsWith("position_ids"));
        string tokenizer = Path.Combine(Folder, "tokenizer");
        Directory.CreateDirectory(tokenizer);
        foreach (var f in new[] { "vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(Fixtures.SharedData, "clip", f), Path.Combine(tokenizer, f));
        string scheduler = Path.Combine(Folder, "scheduler");
        Directory.CreateDirectory(scheduler);
        File.WriteAllText(Path.Combine(scheduler, "scheduler_config.json"), """
            {"_class_name": "DDPMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "prediction_type": "epsilon", "clip_sample": false, "steps_offset": 1}
            """);
        if (withConnector) WriteConnector(Connector, textEncoder);
    }

    /// <summary>A random TSC that reads 384-wide (MiniLM / arctic-xs) features and writes the UNet's 32-wide tokens.</summary>
    public static void WriteConnector(string path, string? textEncoder, int inputDim = 384)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        lock (SeedGate)
        {
            manual_seed(13);
            using var connector = new EllaConnector(new EllaConnectorConfig
            {
                TimeChannel = 32, TimeEmbedDim = CrossAttentionDim, Width = CrossAttentionDim, Layers = 1, Heads = 4, NumLatents = 8, InputDim = inputDim,
            });
            connector.Save(path, textEncoder == null ? null : new Dictionary<string, string> { [ConnectorMetadata.TextEncoderKey] = textEncoder });
        }
    }

    void Write(string sub, string file, object config, Func<TorchSharp.torch.nn.Module> build, long seed, Func<string, bool>? skip = null)
    {
        string dir = Path.Combine(Folder, sub);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config, config.GetType()));
        using var meta = RandomCheckpoint.OnMeta(build);
        RandomCheckpoint.Write(meta, Path.Combine(dir, file), seed, skip);
    }

    /// <summary>For the length of a test: this folder is the default model (ELLA_WORLD_MODEL), and no variable names another.</summary>
    public EnvironmentOverride AsDefault()
    {
        var env = new EnvironmentOverride().Set(WorldDefaultModel.EnvVar, Folder);
        foreach (var v in WorldDefaultModel.ModelEnvVars) env.Set(v, null);
        return env;
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, true); } catch (IOException) { }
    }
}
