using System.Diagnostics;
using System.Text.Json;
using Ella.Benchmarks;
using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Modules.T5;

namespace Ella.Cli.Commands.Bench;

/// <summary>The four models <c>ella bench</c> times, as configs: the real sizes, or tiny ones of the same architecture.</summary>
public sealed record BenchModels(T5Config T5, EllaConnectorConfig Tsc, UNet2DConditionConfig Unet, AutoencoderKLConfig Vae, string Name)
{
    /// <summary>The ControlNet of the UNet's size (the UNet's encoder half + the conditioning embedding).</summary>
    public ControlNetConfig ControlNet => new()
    {
        BlockOutChannels = Unet.BlockOutChannels, DownBlockTypes = Unet.DownBlockTypes, LayersPerBlock = Unet.LayersPerBlock,
        CrossAttentionDim = Unet.CrossAttentionDim, AttentionHeadDim = Unet.AttentionHeadDim,
        ConditioningEmbeddingOutChannels = Name == "full" ? [16, 32, 96, 256] : [8, 8, 16, 16],
    };

    /// <summary>The CLIP text encoder that a LoRA's text-encoder half patches: SD1.5's ViT-L/14 text model, or a tiny one.</summary>
    public ClipTextConfig TextEncoder => Name == "full" ? ClipTextConfig.ClipVitL14()
        : new ClipTextConfig { HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, ProjectionDim = 64 };

    /// <summary>T5 tokens encoded per prompt and ELLA tokens per condition, as in <c>ella generate</c>.</summary>
    public const int T5Tokens = 128;

    /// <summary>FLAN-T5-XL encoder, the released SD1.5 connector, the SD1.5 UNet and VAE.</summary>
    public static BenchModels Full() => new(T5Config.FlanT5Xl(), new EllaConnectorConfig(), UNet2DConditionConfig.StableDiffusion15(), AutoencoderKLConfig.StableDiffusion15(), "full");

    /// <summary>Tiny models with the same blocks (seconds to write and run; for tests and a quick check of the command).</summary>
    public static BenchModels Tiny() => new(
        new T5Config { VocabSize = 256, DModel = 64, DKv = 16, DFf = 128, NumLayers = 2, NumHeads = 4, FeedForwardProj = "gated-gelu" },
        new EllaConnectorConfig { TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 2, Heads = 4, NumLatents = 8, InputDim = 64 },
        new UNet2DConditionConfig
        {
            BlockOutChannels = [32, 32, 64, 64], CrossAttentionDim = 64, LayersPerBlock = 1, SampleSize = 8,
            AttentionHeadDim = JsonSerializer.SerializeToElement(8),
        },
        new AutoencoderKLConfig { BlockOutChannels = [32, 32, 32, 64], LayersPerBlock = 1 },
        "tiny");

    /// <summary>Checkpoint locations in the work folder (null: stage not selected).</summary>
    public sealed record Files(string? T5Folder, string? EllaFile, string? UnetFolder, string? VaeFolder, string? ControlNetFolder = null, string? LoraFile = null, string? TextEncoderFolder = null);

    /// <summary>Writes a random-weight checkpoint for every selected stage that has none yet (kept per model size).</summary>
    public Files Prepare(string workDir, IReadOnlySet<string> stages, TextWriter log)
    {
        string dir = Name == "full" ? workDir : Path.Combine(workDir, Name);
        string? t5 = null, ella = null, unet = null, vae = null;
        if (stages.Contains("t5"))
        {
            t5 = Path.Combine(dir, "flan-t5-xl");
            WriteOnce(Path.Combine(t5, "model.safetensors"), T5, () => new T5EncoderModel(T5), 1, log, "FLAN-T5 encoder", k => k == "encoder.embed_tokens.weight");
        }
        if (stages.Contains("tsc"))
        {
            ella = Path.Combine(dir, "ella-sd1.5-tsc-t5xl.safetensors");
            if (!File.Exists(ella))
            {
                Directory.CreateDirectory(dir);
                using var meta = RandomCheckpoint.OnMeta(() => new EllaConnector(Tsc));
                RandomCheckpoint.Write(meta, ella, seed: 2);
                File.WriteAllText(Path.ChangeExtension(ella, ".json"), Tsc.ToJson());
            }
        }
        bool needsUnet = stages.Contains("unet") || stages.Contains("controlnet") || stages.Contains("lora");
        if (needsUnet)
        {
            unet = Path.Combine(dir, "unet");
            WriteOnce(Path.Combine(unet, "diffusion_pytorch_model.safetensors"), Unet, () => new Modules.UNet.UNet2DConditionModel(Unet), 5, log, "SD1.5 UNet");
        }
        if (stages.Contains("vae"))
        {
            vae = Path.Combine(dir, "vae");
            WriteOnce(Path.Combine(vae, "diffusion_pytorch_model.safetensors"), Vae, () => new Modules.Vae.AutoencoderKL(Vae), 6, log, "SD1.5 VAE");
        }
        string? controlnet = null, lora = null, textEncoder = null;
        if (stages.Contains("controlnet"))
        {
            controlnet = Path.Combine(dir, "controlnet");
            WriteOnce(Path.Combine(controlnet, "diffusion_pytorch_model.safetensors"), ControlNet, () => new Modules.ControlNet.ControlNetModel(ControlNet), 8, log, "SD1.5 ControlNet");
        }
        if (stages.Contains("lora"))
        {
            // SD1.5's CLIP text encoder, which the LoRA's lora_te_ half patches (trigger words in clip / ella+clip modes).
            textEncoder = Path.Combine(dir, "text_encoder");
            WriteOnce(Path.Combine(textEncoder, "model.safetensors"), TextEncoder, () => new Modules.Clip.ClipTextModel(TextEncoder), 10, log, "SD1.5 CLIP text encoder");
            lora = Path.Combine(dir, ToolStages.LoraFileName);
            ToolStages.WriteLora(lora, Unet, TextEncoder, log);
        }
        return new Files(t5, ella, unet, vae, controlnet, lora, textEncoder);
    }

    static void WriteOnce<TConfig>(string file, TConfig config, Func<TorchSharp.torch.nn.Module> build, long seed, TextWriter log, string what, Func<string, bool>? skip = null)
    {
        if (File.Exists(file)) return;
        string folder = Path.GetDirectoryName(file)!;
        Directory.CreateDirectory(folder);
        var sw = Stopwatch.StartNew();
        File.WriteAllText(Path.Combine(folder, "config.json"), JsonSerializer.Serialize(config));
        using var meta = RandomCheckpoint.OnMeta(build);
        RandomCheckpoint.Write(meta, file, seed, skip);
        if (sw.Elapsed.TotalSeconds > 1)
            log.WriteLine($"wrote random {what} ({new FileInfo(file).Length / 1e9:F2} GB) in {sw.Elapsed.TotalSeconds:F1} s");
    }
}
