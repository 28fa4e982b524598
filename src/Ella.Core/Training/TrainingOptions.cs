using Ella.TextEncoders;
using static TorchSharp.torch;

namespace Ella.Training;

/// <summary>Everything an <c>ella train</c> run is told (the command's flags).</summary>
public sealed class TrainingOptions
{
    /// <summary>Stable Diffusion (its UNet is trained against; its VAE encodes images when no cache is given).</summary>
    public string? StableDiffusion { get; set; }
    /// <summary>The text encoder whose features the connector learns to read (captions encoded live, validation
    /// prompts). Null: the feature cache's encoder with <see cref="Cache"/>, else T5.</summary>
    public TextEncoderKind? TextEncoder { get; set; }
    /// <summary>FLAN-T5 folder, for the t5 text encoder: encodes captions live (without a cache) and the validation prompts.</summary>
    public string? T5 { get; set; }
    /// <summary>A feature cache written by <c>ella train cache</c>.</summary>
    public string? Cache { get; set; }
    public IReadOnlyList<string> Data { get; set; } = [];
    public string? Output { get; set; }
    public string? Init { get; set; }
    public string ConnectorType { get; set; } = "tsc";
    /// <summary>What is trained: the connector, or a UNet LoRA with the connector (from <see cref="Init"/>) frozen.</summary>
    public string Target { get; set; } = "connector";
    /// <summary>The LoRA's rank (<c>--target unet-lora</c>).</summary>
    public int Rank { get; set; } = 4;
    /// <summary>The LoRA's alpha: the update is scaled by alpha/rank (default: the rank, a scale of 1).</summary>
    public double? LoraAlpha { get; set; }

    public const string TargetConnector = "connector", TargetUNetLora = "unet-lora";
    public bool TrainsLora => Target == TargetUNetLora;
    public int Blocks { get; set; } = 6;
    public int MaxSteps { get; set; } = 1000;
    public int Batch { get; set; } = 1;
    public int Resolution { get; set; } = 512;
    public long Seed { get; set; }
    public double? SnrGamma { get; set; }
    public double CaptionDropout { get; set; } = 0.1;
    /// <summary>
    /// W of the distillation term (<c>--distill</c>): the loss gains W · MSE(prediction, the frozen UNet's prediction
    /// from the model's own CLIP text encoder on the same caption). 0: off, the paper's objective alone.
    /// </summary>
    public double Distill { get; set; }
    /// <summary>What the distillation teacher reads of each caption (null: the caption; no flag sets it: the shapes
    /// world's recipe maps its synonym captions back to the words its base was trained on).</summary>
    public Func<string, string>? TeacherCaption { get; set; }
    /// <summary>
    /// W of <c>--foreground-weight</c>: a latent element's squared error counts 1 + (W − 1)·m, where m is the sample's
    /// loss mask at that cell (1: foreground), and the loss is the weighted mean. 1: off (every element the same).
    /// </summary>
    public double ForegroundWeight { get; set; } = 1;
    public double? MaxGradNorm { get; set; } = 1.0;
    public double Lr { get; set; } = 1e-4;
    public double WeightDecay { get; set; } = 0.01;
    public string LrSchedule { get; set; } = "constant";
    public int WarmupSteps { get; set; }
    public int GradAccum { get; set; } = 1;
    public ScalarType DType { get; set; } = ScalarType.Float32;
    /// <summary><see cref="DType"/> came from <c>--dtype auto</c>: a resumed run then keeps the dtype it was started with.</summary>
    public bool DTypeAuto { get; set; }
    public Device Device { get; set; } = CPU;
    public int SaveEvery { get; set; } = 500;
    public int KeepLast { get; set; } = 3;
    public string? Resume { get; set; }
    public string? ValidationPrompts { get; set; }
    public int ValidateEvery { get; set; }
    public int ValidationSteps { get; set; } = 20;
    public double ValidationGuidance { get; set; } = 7.5;
    public bool RandomCrop { get; set; }
    public bool RandomFlip { get; set; }
    /// <summary>Captions keep their own token count, truncated to this many T5 tokens.</summary>
    public int MaxLength { get; set; } = 128;

    /// <summary>Checks the flags that need no file; throws <see cref="EllaException"/> naming the flag.</summary>
    public void Validate()
    {
        if (Output is null && Resume is null) throw new EllaException("--output OUT is required (or --resume OUT)");
        if (StableDiffusion is null) throw new EllaException("--sd is required (the UNet the connector is trained for)");
        if (Cache is null && (Data.Count == 0 || (TextEncoder ?? TextEncoderKind.T5) == TextEncoderKind.T5 && T5 is null))
            throw new EllaException("give either --cache DIR (made by 'ella train cache') or --data DIR with --t5 or --text-encoder minilm|arctic-xs (encode live)");
        if (Cache is not null && Data.Count > 0) throw new EllaException("--cache and --data exclude each other (the cache already holds the data)");
        if (Init is not null && !File.Exists(Init) && !Directory.Exists(Init)) throw new EllaException($"--init {Init}: no such file");
        if (!Modules.Ella.Connectors.Types.Contains(ConnectorType))
            throw new EllaException($"--connector '{ConnectorType}' is not known (choose one of: {string.Join(", ", Modules.Ella.Connectors.Types)})");
        void Positive(string flag, int v) { if (v < 1) throw new EllaException($"{flag} must be at least 1, got {v}"); }
        if (Target is not (TargetConnector or TargetUNetLora)) throw new EllaException($"--target {Target}: choose {TargetConnector} or {TargetUNetLora}");
        if (TrainsLora)
        {
            Positive("--rank", Rank);
            if (LoraAlpha is { } a && !(a > 0)) throw new EllaException($"--lora-alpha must be positive, got {a}");
            if (Init is null && Resume is null) throw new EllaException("--target unet-lora needs --init CONNECTOR: the trained ELLA connector the LoRA learns with (it stays frozen)");
        }
        Positive("--max-steps", MaxSteps);
        Positive("--batch", Batch);
        Positive("--blocks", Blocks);
        Positive("--grad-accum", GradAccum);
        Positive("--save-every", SaveEvery);
        Positive("--keep-last", KeepLast);
        Positive("--max-length", MaxLength);
        if (Resolution <= 0 || Resolution % 8 != 0) throw new EllaException($"--resolution {Resolution}: must be a positive multiple of 8");
        if (!(CaptionDropout >= 0 && CaptionDropout <= 1)) throw new EllaException($"--caption-dropout must be in [0, 1], got {CaptionDropout}");
        if (!(Distill >= 0 && double.IsFinite(Distill))) throw new EllaException($"--distill must be a number ≥ 0, got {Distill}");
        if (Distill > 0 && TrainsLora) throw new EllaException("--distill teaches the connector; it does not apply to --target unet-lora");
        if (!(ForegroundWeight > 0 && double.IsFinite(ForegroundWeight))) throw new EllaException($"--foreground-weight must be a positive number (1: off), got {ForegroundWeight}");
        if (MaxGradNorm is { } g && !(g > 0)) throw new EllaException($"--max-grad-norm must be positive, got {g}");
        if (!(WeightDecay >= 0)) throw new EllaException($"--weight-decay must be ≥ 0, got {WeightDecay}");
        if (SnrGamma is { } s && !(s > 0)) throw new EllaException($"--snr-gamma must be positive, got {s}");
        new LearningRateSchedule(LrSchedule, Lr, WarmupSteps, MaxSteps).Validate();
        Positive("--validation-steps", ValidationSteps);
        if (ValidateEvery < 0) throw new EllaException($"--validate-every must be ≥ 0, got {ValidateEvery}");
        if (ValidationPrompts is not null)
        {
            if (!File.Exists(ValidationPrompts)) throw new EllaException($"--validation-prompts {ValidationPrompts}: no such file");
            if (TextEncoder == TextEncoderKind.T5 && T5 is null) throw new EllaException("--validation-prompts needs --t5 to encode the prompts with the t5 text encoder");
        }
    }
}
