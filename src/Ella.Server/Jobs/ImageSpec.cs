using Ella.Imaging;
using Ella.Lora;
using Ella.Pipelines;
using Ella.Server.Api;

namespace Ella.Server.Jobs;

/// <summary>One validated image request, whichever API it came through.</summary>
public sealed record ImageSpec
{
    public required string Prompt { get; init; }
    public string NegativePrompt { get; init; } = "";
    public int Count { get; init; } = 1;
    public required int Width { get; init; }
    public required int Height { get; init; }
    public required int Steps { get; init; }
    public required double GuidanceScale { get; init; }
    /// <summary>Null draws a random seed.</summary>
    public long? Seed { get; init; }
    public required string Scheduler { get; init; }
    public required GenerationMode Mode { get; init; }
    /// <summary>"b64_json" or "url".</summary>
    public string ResponseFormat { get; init; } = "b64_json";
    /// <summary>img2img / inpainting: the image to start from.</summary>
    public RgbImage? InitImage { get; init; }
    /// <summary>Inpainting mask (white = repaint), the init image's size.</summary>
    public RgbImage? Mask { get; init; }
    /// <summary>How far the init image is noised, in (0, 1]; null: the pipeline's default.</summary>
    public double? Strength { get; init; }
    /// <summary>LoRA files (resolved in the server's --lora-dir) merged for this request only.</summary>
    public IReadOnlyList<LoraSpec> Loras { get; init; } = [];

    public const int MaxCount = 8;
    public const int MaxSteps = 150;
    public const double MaxGuidance = 100;

    public GenerationRequest ToRequest(GenerationRequest defaults) => defaults with
    {
        Prompts = [Prompt], NegativePrompt = NegativePrompt, BatchSize = Count, Width = Width, Height = Height,
        Steps = Steps, GuidanceScale = GuidanceScale, Seed = Seed, Scheduler = Scheduler, Mode = Mode,
        PromptEmbeds = null, NegativePromptEmbeds = null, InitImage = InitImage, Mask = Mask, Strength = Strength, Loras = Loras,
    };

    /// <summary>The checks that depend on the server's limits and on what the pipeline loaded; 400s name the field.</summary>
    public void Check(ServerOptions options, EllaPipeline? pipeline, string sizeParam = "size", string? heightParam = null, string modeParam = "mode",
        string imageParam = "image", string maskParam = "mask", string strengthParam = "strength")
    {
        if (Mask != null && InitImage == null) throw ApiError.BadRequest($"'{maskParam}' needs '{imageParam}' (the image to inpaint)", maskParam, "missing_required_parameter");
        if (Mask != null && (Mask.Width != InitImage!.Width || Mask.Height != InitImage.Height))
            throw ApiError.BadRequest($"'{maskParam}' is {Mask.Width}×{Mask.Height} but '{imageParam}' is {InitImage.Width}×{InitImage.Height}; they must be the same size", maskParam);
        if (Strength is { } st && (double.IsNaN(st) || st <= 0 || st > 1)) throw ApiError.BadRequest($"'{strengthParam}' must be in (0, 1], got {st}", strengthParam);
        if (string.IsNullOrWhiteSpace(Prompt)) throw ApiError.BadRequest("'prompt' is required and must not be empty", "prompt", "missing_required_parameter");
        if (heightParam == null && (Width <= 0 || Height <= 0 || Width % 8 != 0 || Height % 8 != 0))
            throw ApiError.BadRequest($"{sizeParam} {Width}x{Height}: width and height must be positive multiples of 8", sizeParam);
        if (Width <= 0 || Width % 8 != 0)
            throw ApiError.BadRequest($"{sizeParam} {Width} must be a positive multiple of 8", sizeParam);
        if (Height <= 0 || Height % 8 != 0)
            throw ApiError.BadRequest($"{heightParam} {Height} must be a positive multiple of 8", heightParam);
        if ((long)Width * Height > options.MaxPixels)
            throw ApiError.BadRequest($"{sizeParam}: {Width}x{Height} has {(long)Width * Height} pixels; this server allows at most {options.MaxPixels} (--max-pixels)", sizeParam);
        if (pipeline == null) return;
        if (GenerationModes.UsesElla(Mode) && pipeline.Connector == null)
            throw ApiError.BadRequest($"mode '{GenerationModes.Name(Mode)}' needs the ELLA connector, which this server did not load", modeParam, "unsupported_value");
        if (pipeline.StableDiffusion.Unet.Config.InChannels == 9 && Mask == null)
            throw ApiError.BadRequest($"this server's UNet is an inpainting UNet (in_channels 9): send '{imageParam}' and '{maskParam}'", maskParam, "missing_required_parameter");
        if (GenerationModes.UsesClip(Mode) && pipeline.StableDiffusion.TextEncoder == null)
            throw ApiError.BadRequest($"mode '{GenerationModes.Name(Mode)}' needs the CLIP text encoder, which this server did not load", modeParam, "unsupported_value");
    }

    public static GenerationMode ParseMode(string? value, GenerationMode fallback, string param = "mode")
    {
        if (value == null) return fallback;
        return value.Trim().ToLowerInvariant() switch
        {
            "ella" => GenerationMode.Ella,
            "clip" => GenerationMode.Clip,
            "ella+clip" => GenerationMode.EllaClip,
            _ => throw ApiError.BadRequest($"unknown {param} '{value}' (ella, clip, ella+clip)", param),
        };
    }

    public static string ParseScheduler(string? value, string fallback, string param, string? a1111Schedule = null)
    {
        if (value == null && a1111Schedule == null) return fallback;
        return Samplers.Resolve(value ?? fallback, a1111Schedule)
               ?? throw ApiError.BadRequest($"unknown {param} '{value ?? a1111Schedule}' (ours: {string.Join(", ", Ella.Schedulers.SchedulerFactory.Names)}; Automatic1111: {string.Join(", ", Samplers.Automatic1111.Keys)})", value == null ? "scheduler" : param);
    }
}
