using System.Globalization;
using System.Text.Json;
using Ella.Imaging;
using Ella.Pipelines;
using Ella.Schedulers;
using Microsoft.Extensions.AI;

namespace Ella.Extensions.AI;

/// <summary>
/// EllaSharp as a Microsoft.Extensions.AI <see cref="IImageGenerator"/> (experimental in MEAI: MEAI001): wraps a loaded
/// <see cref="EllaPipeline"/>, so .NET apps can use it wherever MEAI image generation is plugged in.
/// <para><see cref="ImageGenerationOptions"/>: <c>Count</c> → images per prompt (1–8), <c>ImageSize</c> → width and
/// height (multiples of 8), <c>MediaType</c> image/png only. <c>AdditionalProperties</c> carry the rest, under the
/// server's JSON names: <c>negative_prompt</c>, <c>steps</c>, <c>guidance_scale</c>, <c>seed</c>, <c>scheduler</c>,
/// <c>mode</c> (ella|clip|ella+clip), <c>token_length</c> (flexible|fixed), <c>max_length</c>.</para>
/// Each result is a <see cref="DataContent"/> holding a PNG with the same <c>parameters</c> text as <c>ella generate</c>,
/// which is also in the content's AdditionalProperties ("parameters", "seed").
/// </summary>
public sealed class EllaImageGenerator : IImageGenerator
{
    readonly EllaPipeline _pipeline;
    readonly GenerationRequest _defaults;
    readonly bool _ownsPipeline;
    readonly string _dtypeName;

    /// <param name="defaults">values for what the options leave out (default: the pipeline's, 25 steps, CFG 7.5, 512×512)</param>
    /// <param name="ownsPipeline">dispose the pipeline with this generator</param>
    public EllaImageGenerator(EllaPipeline pipeline, GenerationRequest? defaults = null, string modelId = "ella", string dtypeName = "fp32", bool ownsPipeline = false)
    {
        _pipeline = pipeline;
        _defaults = defaults ?? new GenerationRequest { Prompts = [] };
        _ownsPipeline = ownsPipeline;
        _dtypeName = dtypeName;
        Metadata = new ImageGeneratorMetadata("ellasharp", null, modelId);
    }

    public ImageGeneratorMetadata Metadata { get; }

    public async Task<ImageGenerationResponse> GenerateAsync(ImageGenerationRequest request, ImageGenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.OriginalImages?.Any() == true) throw new NotSupportedException("EllaSharp generates from text only; editing images (OriginalImages) is not supported");
        if (string.IsNullOrWhiteSpace(request.Prompt)) throw new ArgumentException("a prompt is required", nameof(request));
        if (options?.MediaType is { } media && media != "image/png") throw new NotSupportedException($"MediaType '{media}': EllaSharp writes image/png only");
        var r = ToRequest(request.Prompt, options);
        _pipeline.Validate(r);
        // Generate is synchronous and serialised; run it off the caller's thread. Cancellation is checked between steps.
        using var result = await Task.Run(() => _pipeline.Generate(r, null, cancellationToken), cancellationToken);
        var contents = new List<AIContent>();
        for (int i = 0; i < result.Images.shape[0]; i++)
        {
            RgbImage image;
            using (var chw = result.Images[i]) image = RgbImage.FromTensor(chw);
            string parameters = GenerationParameters.Text(_pipeline, r, result, request.Prompt, i, _dtypeName);
            contents.Add(new DataContent(image.EncodePng(new Dictionary<string, string> { ["parameters"] = parameters }), "image/png")
            {
                AdditionalProperties = new() { ["parameters"] = parameters, ["seed"] = result.Seed },
            });
        }
        return new ImageGenerationResponse(contents) { RawRepresentation = result.Seed };
    }

    /// <summary>The pipeline request for a prompt and MEAI options (exposed for tests and callers that log it).</summary>
    public GenerationRequest ToRequest(string prompt, ImageGenerationOptions? options)
    {
        var r = _defaults with { Prompts = [prompt], PromptEmbeds = null, NegativePromptEmbeds = null };
        if (options == null) return r;
        if (options.Count is { } count)
        {
            if (count is < 1 or > 8) throw new ArgumentOutOfRangeException(nameof(options), $"Count must be 1–8, got {count}");
            r = r with { BatchSize = count };
        }
        if (options.ImageSize is { } size) r = r with { Width = size.Width, Height = size.Height };
        if (options.AdditionalProperties is { } extra)
            foreach (var (key, value) in extra)
            {
                r = key switch
                {
                    "negative_prompt" => r with { NegativePrompt = AsString(key, value) },
                    "steps" => r with { Steps = (int)AsLong(key, value, 1, 150) },
                    "guidance_scale" => r with { GuidanceScale = AsDouble(key, value) },
                    "seed" => r with { Seed = AsLong(key, value, -1, long.MaxValue) is var s && s >= 0 ? s : null },
                    "scheduler" => SchedulerFactory.IsKnown(AsString(key, value)) ? r with { Scheduler = AsString(key, value) }
                        : throw new ArgumentException($"AdditionalProperties[\"scheduler\"]: unknown scheduler '{value}' ({string.Join(", ", SchedulerFactory.Names)})"),
                    "mode" => r with { Mode = ParseMode(AsString(key, value)) },
                    "token_length" => r with { TokenLength = AsString(key, value) switch
                    {
                        "flexible" => Text.TokenLength.Flexible,
                        "fixed" => Text.TokenLength.Fixed,
                        var other => throw new ArgumentException($"AdditionalProperties[\"token_length\"]: '{other}' is not flexible or fixed"),
                    } },
                    "max_length" => r with { MaxLength = (int)AsLong(key, value, 2, 4096) },
                    _ => r, // other providers' options: ignored, as MEAI clients do
                };
            }
        return r;
    }

    static GenerationMode ParseMode(string s)
    {
        try { return GenerationModes.Parse(s); }
        catch (EllaException e) { throw new ArgumentException($"AdditionalProperties[\"mode\"]: {e.Message}"); }
    }

    static string AsString(string key, object? value) => value switch
    {
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } j => j.GetString()!,
        _ => throw new ArgumentException($"AdditionalProperties[\"{key}\"] must be a string, got {value?.GetType().Name ?? "null"}"),
    };

    static long AsLong(string key, object? value, long min, long max)
    {
        long v = value switch
        {
            int i => i,
            long l => l,
            short s => s,
            double d when d == Math.Floor(d) => (long)d,
            JsonElement { ValueKind: JsonValueKind.Number } j when j.TryGetInt64(out var l) => l,
            string s when long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) => l,
            _ => throw new ArgumentException($"AdditionalProperties[\"{key}\"] must be an integer, got {value ?? "null"}"),
        };
        if (v < min || v > max) throw new ArgumentOutOfRangeException(key, $"AdditionalProperties[\"{key}\"] must be {min}–{max}, got {v}");
        return v;
    }

    static double AsDouble(string key, object? value) => value switch
    {
        double d => d,
        float f => f,
        int i => i,
        long l => l,
        decimal m => (double)m,
        JsonElement { ValueKind: JsonValueKind.Number } j => j.GetDouble(),
        string s when double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
        _ => throw new ArgumentException($"AdditionalProperties[\"{key}\"] must be a number, got {value ?? "null"}"),
    };

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey != null) return null;
        if (serviceType == typeof(ImageGeneratorMetadata)) return Metadata;
        if (serviceType == typeof(EllaPipeline)) return _pipeline;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    public void Dispose()
    {
        if (_ownsPipeline) _pipeline.Dispose();
    }
}
