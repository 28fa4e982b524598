using System.Diagnostics;
using Ella.Modules.Ella;
using Ella.Modules.T5;
using Ella.Schedulers;
using Ella.Text;
using Ella.TextEncoders;
using Ella.Text.PromptWeights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>
/// Text-to-image with ELLA, mirroring the authors' inference.py on top of diffusers' StableDiffusionPipeline:
/// 1 check inputs, 2 encode prompts (the text encoder — FLAN-T5, MiniLM, … — for ELLA, CLIP for the baseline), 3 timesteps, 4 seeded initial latents,
/// 5 the denoising loop (TSC(features, t) every step, UNet, CFG, scheduler step), 6 VAE decode.
/// Load once with <see cref="Load"/>; call <see cref="Generate"/> as often as needed (calls are serialised).
/// </summary>
public sealed partial class EllaPipeline : IDisposable
{
    readonly PipelineLoadOptions _options;
    readonly object _gate = new();
    ITextFeatureEncoder? _encoder;
    /// <summary>Builds the text encoder: once at load, or for each encoding in low-memory mode. Null: no ELLA text.</summary>
    Func<ITextFeatureEncoder>? _newEncoder;
    readonly Dictionary<(string, GenerationMode, TokenLength, int), CachedConditioner> _negativeCache = new();

    public StableDiffusionModel StableDiffusion { get; }
    public ConnectorModule? Connector { get; }
    public string? T5Path { get; }
    public string? EllaPath { get; }
    public TextEncoderKind TextEncoder => _options.TextEncoder;

    EllaPipeline(PipelineLoadOptions options, StableDiffusionModel sd, ConnectorModule? connector, string? t5Path, string? ellaPath)
    {
        _options = options;
        StableDiffusion = sd;
        Connector = connector;
        T5Path = t5Path;
        EllaPath = ellaPath;
    }

    /// <summary>Loads every component the options name; the text encoder is loaded now unless <see cref="PipelineLoadOptions.LowMemory"/>.</summary>
    public static EllaPipeline Load(PipelineLoadOptions options, Action<string>? log = null)
    {
        Native.TorchRuntime.Initialize();
        Compatibility.ModelCompatibility.Check(options);
        var sw = Stopwatch.StartNew();
        var sd = StableDiffusionModel.Load(options.StableDiffusion, options.DType, options.Device, options.LoadClip, options.ClipTokenizer);
        log?.Invoke($"loaded Stable Diffusion ({sd.Name}) in {sw.Elapsed.TotalSeconds:F1} s");
        ConnectorModule? connector = null;
        string? ellaFile = null;
        try
        {
            if (options.Ella != null)
            {
                sw.Restart();
                ellaFile = ModelLocator.EllaFile(options.Ella);
                connector = Connectors.FromPretrained(ellaFile, options.DType, options.Device);
                int width = connector.Config.ConditionWidth, cross = sd.Unet.Config.CrossAttentionDim;
                if (width != cross)
                    throw new EllaException($"{ellaFile}: the ELLA connector outputs {width}-wide tokens but the UNet's cross_attention_dim is {cross}; this connector does not belong to this Stable Diffusion model");
                log?.Invoke($"loaded ELLA connector in {sw.Elapsed.TotalSeconds:F1} s");
            }
            var pipeline = new EllaPipeline(options, sd, connector, options.T5, ellaFile);
            try
            {
                pipeline.SetUpTextEncoder(log);
                if (connector != null && pipeline._newEncoder != null) pipeline.CheckTextWidth();
            }
            catch
            {
                pipeline._encoder?.Dispose();
                throw;
            }
            return pipeline;
        }
        catch
        {
            sd.Dispose();
            connector?.Dispose();
            throw;
        }
    }

    /// <summary>FLAN-T5 when a T5 folder is given (its tokenizer read now, so a bad folder fails at load); a packaged
    /// encoder (MiniLM, arctic-xs) when an ELLA connector is loaded.</summary>
    void SetUpTextEncoder(Action<string>? log)
    {
        var o = _options;
        if (o.TextEncoder == TextEncoderKind.T5)
        {
            if (o.T5 == null) return;
            var tokenizer = T5Tokenizer.FromPretrained(o.T5);
            _newEncoder = () => new T5TextFeatureEncoder(T5EncoderModel.FromPretrained(o.T5, o.DType, o.Device), tokenizer, o.T5, o.Device);
        }
        else
        {
            if (o.Ella == null) return;
            _newEncoder = () => TextEncoderFactory.Create(o.TextEncoder, null, o.DType, o.Device);
        }
        if (o.LowMemory) return;
        var sw = Stopwatch.StartNew();
        _encoder = _newEncoder();
        log?.Invoke($"loaded {(o.TextEncoder == TextEncoderKind.T5 ? "T5 encoder" : _encoder.Name)} in {sw.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>The connector's input_dim must be the text encoder's width.</summary>
    void CheckTextWidth()
    {
        int hidden = _encoder?.HiddenSize ?? TextEncoderFactory.HiddenSize(_options.TextEncoder, _options.T5);
        long input = Connector!.Config.InputDim ?? Connector.Config.Width;
        if (hidden != input)
            throw new EllaException($"{EllaPath}: the ELLA connector reads {input}-wide text features (input_dim) but the " +
                                    $"{TextEncoderKinds.Name(_options.TextEncoder)} text encoder gives {hidden}-wide ones; " +
                                    "use the --text-encoder this connector was trained with");
    }

    Device DeviceOrCpu => _options.Device ?? CPU;

    /// <summary>Checks a request against what this pipeline loaded; throws an <see cref="EllaException"/> naming the problem.</summary>
    public void Validate(GenerationRequest r)
    {
        int f = StableDiffusion.Vae.Config.DownscaleFactor;
        if (r.Width <= 0 || r.Height <= 0 || r.Width % f != 0 || r.Height % f != 0)
            throw new EllaException($"size {r.Width}×{r.Height}: width and height must be positive multiples of {f}");
        if (r.Prompts.Count == 0 && r.PromptEmbeds is null) throw new EllaException("no prompt given");
        if (r.Mask == null) Compatibility.RequestCompatibility.CheckTextToImage(StableDiffusion, _options.StableDiffusion); // inpainting feeds a 9-channel UNet its mask and masked image
        if (r.PromptEmbeds is { } pe)
        {
            if (r.Mode != GenerationMode.Ella) throw new EllaException("prompt embeddings can only be used with --mode ella");
            if (Connector == null) throw new EllaException("prompt embeddings need the ELLA connector (--ella)");
            long inputDim = Connector.Config.InputDim ?? Connector.Config.Width;
            if (pe.dim() != 3 || pe.shape[2] != inputDim) throw new EllaException($"prompt embeddings must be [B, L, {inputDim}], got [{string.Join(", ", pe.shape)}]");
            if (r.GuidanceScale > 1 && r.NegativePromptEmbeds is null) throw new EllaException("with prompt embeddings and guidance > 1, negative prompt embeddings are needed too");
        }
        if (r.Steps < 1) throw new EllaException($"steps must be at least 1, got {r.Steps}");
        if (r.BatchSize < 1) throw new EllaException($"batch must be at least 1, got {r.BatchSize}");
        if (double.IsNaN(r.GuidanceScale) || r.GuidanceScale < 0) throw new EllaException($"guidance must be ≥ 0, got {r.GuidanceScale}");
        if (GenerationModes.UsesElla(r.Mode) && (Connector == null || (_newEncoder == null && r.PromptEmbeds is null)))
            throw new EllaException(_options.TextEncoder == TextEncoderKind.T5
                ? $"--mode {GenerationModes.Name(r.Mode)} needs the ELLA connector (--ella) and FLAN-T5 (--t5)"
                : $"--mode {GenerationModes.Name(r.Mode)} needs the ELLA connector (--ella)");
        if (GenerationModes.UsesClip(r.Mode) && StableDiffusion.TextEncoder == null)
            throw new EllaException($"--mode {GenerationModes.Name(r.Mode)} needs the CLIP text encoder, which was not loaded");
        if (r.TokenLength == TokenLength.Fixed && r.MaxLength < 2) throw new EllaException($"max length must be at least 2, got {r.MaxLength}");
        Compatibility.RequestLimits.Check(r, StableDiffusion, _options.DType);
        if (!SchedulerFactory.IsKnown(r.Scheduler))
            throw new EllaException($"unknown scheduler '{r.Scheduler}' (choose one of: {string.Join(", ", SchedulerFactory.Names)})");
        ValidateTools(r);
    }

    public GenerationResult Generate(GenerationRequest request, IProgress<StepProgress>? progress = null, CancellationToken cancellation = default)
    {
        lock (_gate)
        {
            Validate(request);
            request = request with { Prompts = request.Prompts.Select(PromptText.Clean).ToList(), NegativePrompt = PromptText.Clean(request.NegativePrompt) };
            using var mode = inference_mode();
            using var scope = NewDisposeScope();
            var warnings = new List<string>();
            request = ApplyLoras(request, warnings);
            var sw = Stopwatch.StartNew();
            // Each prompt gives BatchSize rows, as diffusers' num_images_per_prompt does.
            IConditioner cond;
            IConditioner? uncondRows = null;
            int rows;
            if (request.PromptEmbeds is { } embeds)
            {
                var condRows = EmbedRows(embeds, request.TokenLength).SelectMany(f => Enumerable.Repeat(f, request.BatchSize)).ToList();
                rows = condRows.Count;
                cond = new EllaConditioner(Connector!, condRows, _options.DType);
                if (request.GuidanceScale > 1.0)
                {
                    var neg = EmbedRows(request.NegativePromptEmbeds!, request.TokenLength);
                    uncondRows = neg.Count == 1 ? new ExpandedConditioner(new EllaConditioner(Connector!, neg, _options.DType), rows, ownsSource: true)
                        : new EllaConditioner(Connector!, neg.SelectMany(f => Enumerable.Repeat(f, request.BatchSize)).ToList(), _options.DType);
                }
            }
            else
            {
                var prompts = request.Prompts.SelectMany(p => Enumerable.Repeat(p, request.BatchSize)).ToList();
                rows = prompts.Count;
                cond = BuildConditioner(prompts, request, warnings, negative: false);
                uncondRows = request.GuidanceScale > 1.0 ? new ExpandedConditioner(NegativeCondition(request, warnings), rows) : null;
            }
            using var condScope = cond;
            using var uncondScope = uncondRows;
            var encodeTime = sw.Elapsed;

            using var scheduler = SchedulerFactory.Create(request.Scheduler, StableDiffusion.SchedulerConfig);
            scheduler.SetTimesteps(request.Steps);
            long seed = request.Seed ?? Random.Shared.NextInt64(0, 1L << 53);
            var seeds = SeedGenerators.Create(request.SeedMode, seed, rows);
            sw.Restart();
            Tensor final;
            var (latents, parts) = Start(request, rows, scheduler, seeds, request.GuidanceScale > 1.0 && uncondRows != null);
            using (latents)
            using (parts)
                final = DenoisingLoop.Run(StableDiffusion.Unet, scheduler, latents, cond, uncondRows, request.GuidanceScale, seeds.Main, _options.DType, progress, cancellation, parts: parts);
            var denoiseTime = sw.Elapsed;
            sw.Restart();
            Tensor images;
            using (final)
                images = DenoisingLoop.Decode(StableDiffusion.Vae, final, _options.DType, request.VaeTiling).cpu().MoveToOuterDisposeScope();
            return new GenerationResult
            {
                Images = images, Seed = seed, SchedulerName = scheduler.DisplayName, Warnings = warnings,
                EncodeTime = encodeTime, DenoiseTime = denoiseTime, DecodeTime = sw.Elapsed,
            };
        }
    }

    /// <summary>The negative prompt's condition, cached per timestep across calls (it depends on t only).</summary>
    CachedConditioner NegativeCondition(GenerationRequest r, List<string> warnings)
    {
        var key = (GenerationModes.UsesClip(r.Mode) ? $"{r.NegativePrompt}\0{ClipChunks(r)}" : r.NegativePrompt, r.Mode, r.TokenLength, r.TokenLength == TokenLength.Fixed ? r.MaxLength : r.MaxPromptTokens);
        if (!_negativeCache.TryGetValue(key, out var cached))
        {
            if (_negativeCache.Count >= 8)
            {
                foreach (var c in _negativeCache.Values) c.Dispose();
                _negativeCache.Clear();
            }
            cached = new CachedConditioner(BuildConditioner([r.NegativePrompt], r, warnings, negative: true));
            _negativeCache[key] = cached;
        }
        return cached;
    }

    IConditioner BuildConditioner(IReadOnlyList<string> prompts, GenerationRequest r, List<string> warnings, bool negative)
    {
        IConditioner? ella = GenerationModes.UsesElla(r.Mode) ? EllaCondition(prompts, r, warnings, negative) : null;
        IConditioner? clip = GenerationModes.UsesClip(r.Mode) ? ClipCondition(prompts, r, warnings, negative) : null;
        return r.Mode switch
        {
            GenerationMode.Ella => ella!,
            GenerationMode.Clip => clip!,
            _ => new ConcatConditioner(ella!, clip!),
        };
    }

    /// <summary>Text-encoder features of each prompt (own length when flexible; padded/truncated to max length when fixed).</summary>
    public IReadOnlyList<Tensor> EncodeText(IReadOnlyList<string> prompts, TokenLength mode, int maxLength, List<string>? warnings = null)
    {
        var encoder = _encoder ?? _newEncoder!();
        try
        {
            var features = new List<Tensor>();
            var cache = new Dictionary<string, Tensor>();
            foreach (var prompt in prompts)
            {
                if (cache.TryGetValue(prompt, out var same)) { features.Add(same); continue; }
                var e = encoder.Encode(prompt, mode, maxLength);
                var f = e.Features.DetachFromDisposeScope();
                if (e.Truncated && warnings != null)
                    warnings.Add($"prompt truncated to {f.shape[1]} {TextEncoderKinds.TokenUnit(_options.TextEncoder)} tokens (of {e.UntruncatedLength}{(PromptText.Prefix(prompt, maxLength + 1).Length < prompt.Length ? " or more" : "")}); dropped: \"{Truncate(e.DroppedText ?? "")}\"");
                cache[prompt] = f;
                features.Add(f);
            }
            return features;
        }
        finally
        {
            if (_encoder == null) encoder.Dispose();
        }
    }

    /// <summary>The same as <see cref="EncodeText"/> (the name from when FLAN-T5 was the only encoder).</summary>
    public IReadOnlyList<Tensor> EncodeT5(IReadOnlyList<string> prompts, TokenLength mode, int maxLength, List<string>? warnings = null) =>
        EncodeText(prompts, mode, maxLength, warnings);

    IConditioner EllaCondition(IReadOnlyList<string> prompts, GenerationRequest r, List<string> warnings, bool negative)
    {
        var features = EncodeText(prompts.Select(PromptAttention.Strip).ToList(), r.TokenLength, r.TokenLength == TokenLength.Fixed ? r.MaxLength : r.MaxPromptTokens, negative ? null : warnings); // T5 gets no weights
        try { return new EllaConditioner(Connector!, features, _options.DType); }
        finally { foreach (var f in features.Distinct(ReferenceEqualityComparer.Instance).Cast<Tensor>()) f.Dispose(); }
    }

    /// <summary>CLIP's condition with Automatic1111's prompt weights and 75-token chunks (Text/PromptWeights); prompt and
    /// negative get the same number of chunks.</summary>
    IConditioner ClipCondition(IReadOnlyList<string> prompts, GenerationRequest r, List<string> warnings, bool negative)
    {
        var tokenizer = StableDiffusion.Tokenizer!;
        int chunks = ClipChunks(r);
        if (!negative && chunks > 1)
            warnings.Add($"prompt longer than {ClipPromptChunks.ChunkLength(tokenizer)} CLIP tokens: encoded as {chunks} chunks of {ClipPromptChunks.ChunkLength(tokenizer)} (+ start/end), as Automatic1111 does");
        using var scope = NewDisposeScope();
        var encoded = new Dictionary<string, Tensor>();
        var rows = prompts.Select(p => encoded.TryGetValue(p, out var e) ? e
            : encoded[p] = WeightedClipEncoder.Encode(StableDiffusion.TextEncoder!, tokenizer, ClipText(p, r), chunks, DeviceOrCpu)).ToArray();
        return new StaticConditioner(cat(rows, 0).MoveToOuterDisposeScope());
    }

    int ClipChunks(GenerationRequest r) => r.Prompts.Append(r.NegativePrompt).Distinct().Max(p => WeightedClipEncoder.ChunkCount(StableDiffusion.Tokenizer!, ClipText(p, r)));

    /// <summary>The prompt text CLIP's chunks are made from: cut near --max-prompt-tokens, so a huge prompt stays bounded.</summary>
    static string ClipText(string prompt, GenerationRequest r) => PromptText.Prefix(prompt, r.MaxPromptTokens);

    /// <summary>Rows of precomputed features: in flexible mode each row without its trailing all-zero padding.</summary>
    static List<Tensor> EmbedRows(Tensor embeds, TokenLength mode)
    {
        var rows = new List<Tensor>();
        for (int r = 0; r < embeds.shape[0]; r++)
        {
            var row = embeds[r..(r + 1)];
            if (mode == TokenLength.Flexible)
            {
                using var nonzero = row[0].abs().sum(1).gt(0).nonzero();
                long length = nonzero.shape[0] == 0 ? 1 : nonzero[-1, 0].item<long>() + 1;
                row = row[.., ..(int)length];
            }
            rows.Add(row);
        }
        return rows;
    }

    static string Truncate(string s) => s.Length <= 80 ? s : s[..77] + "…";

    public void Dispose()
    {
        DisposeTools();
        foreach (var c in _negativeCache.Values) c.Dispose();
        _negativeCache.Clear();
        StableDiffusion.Dispose();
        Connector?.Dispose();
        _encoder?.Dispose();
    }
}
