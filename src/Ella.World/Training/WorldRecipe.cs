using System.Diagnostics;
using System.Globalization;
using Ella.Configs;
using Ella.Modules.Clip;
using Ella.Modules.UNet;
using Ella.Modules.Vae;
using Ella.Text;
using Ella.TextEncoders;
using Ella.Training;
using Ella.Training.Data;
using Ella.World.Language;
using Ella.World.Scenes;
using Ella.World.Splits;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>Everything <c>ella world train</c> is told.</summary>
public sealed class WorldTrainOptions
{
    /// <summary>Checkpoints, logs, loss plots, the connector data and feature caches.</summary>
    public required string WorkDir { get; init; }
    /// <summary>The diffusers folder the recipe writes (the shipped model: models/shapes-world).</summary>
    public required string ModelDir { get; init; }
    /// <summary>A CLIP tokenizer folder (vocab.json + merges.txt): the real CLIP BPE vocabulary.</summary>
    public required string ClipTokenizer { get; init; }
    public WorldModelSizes Sizes { get; init; } = WorldModelSizes.Default;
    public long Seed { get; init; }
    /// <summary>A trained VAE folder (config.json with its scaling_factor + weights) used instead of stage 1, e.g. a shipped model's vae/.</summary>
    public string? VaeFrom { get; init; }
    /// <summary>A trained world model folder: stages 1–2 are skipped and only the connectors are trained against it.</summary>
    public string? BaseFrom { get; init; }
    public StageSettings Vae { get; init; } = new(MaxSteps: 4000, Batch: 8, Lr: 1e-3, WarmupSteps: 50, SaveEvery: 100, Seed: 0);
    public StageSettings Base { get; init; } = new(MaxSteps: 2000, Batch: 64, Lr: 5e-4, WarmupSteps: 100, SaveEvery: 100, Seed: 1, EmaDecay: 0.999);
    public StageSettings Connector { get; init; } = new(MaxSteps: 1000, Batch: 64, Lr: 3e-4, WarmupSteps: 50, SaveEvery: 100, Seed: 2);
    /// <summary>Scenes (with dense captions) the connectors are trained on.</summary>
    public int ConnectorSamples { get; init; } = 20_000;
    public double CaptionDropout { get; init; } = 0.1;
    /// <summary>What the UNet predicts (the scheduler config's prediction_type): v_prediction (the recipe) or epsilon.</summary>
    public string Prediction { get; init; } = "v_prediction";
    /// <summary>
    /// The noise schedule (the scheduler config's beta_schedule): squaredcos_cap_v2 (the cosine schedule of improved
    /// DDPM, the recipe) or linear (DDPM's β 1e-4 … 0.02). Measured on width-64 bases: cosine in 2,000 steps scored
    /// 48.0 / 40.3 (eval / paraphrase) against linear's 44.4 / 32.5 in 3,000.
    /// </summary>
    public string BetaSchedule { get; init; } = "squaredcos_cap_v2";
    /// <summary>Which connectors stage 3 trains: tsc (shipped as ella/), mlp, resampler, tsc-arctic-xs (ablations/).</summary>
    public IReadOnlyList<string> Connectors { get; init; } = ["tsc"];
    /// <summary>
    /// The dtype the base stage's UNet computes in: float32, or bf16 in mixed precision (float32 master weights and
    /// optimizer state; what <c>--dtype auto</c>, the CLI's default, picks on a CPU with native bf16, where the step runs
    /// about 2× faster; the shipped weights were trained so).
    /// </summary>
    public ScalarType BaseComputeDtype { get; init; } = ScalarType.Float32;
    /// <summary>
    /// Standard deviation of the from-scratch CLIP's initial token embeddings: 1.0 (the recipe); 0.02 is transformers'.
    /// Measured on a base trained with 0.02: after 2,500 steps the rows of caption words ("red", 736) had norm 0.25
    /// against 0.20 for words never seen, and the last hidden states of "red triangle" and "green square" differed by
    /// 0.8% of their norm, so the base drew the same picture for both. With 1.0 they differed by 18% after 600 steps and
    /// colours and backgrounds followed the text (see the README's world section for what that did to the scores).
    /// </summary>
    public double TokenEmbeddingStd { get; init; } = 1.0;
    /// <summary>Stage 1's latent-preview weight W (0: off, the shipped VAE): see <see cref="LatentPreview"/>.</summary>
    public double VaeLatentPreview { get; init; }
    /// <summary>
    /// Stage 3's distillation weight W (1, the recipe; 0: off): the connector's loss gains W · MSE to the frozen UNet's prediction from
    /// the base's own CLIP on the same dense caption (<see cref="ClipTeacher"/>), so it starts from what the base can
    /// already draw instead of from nothing.
    /// </summary>
    public double ConnectorDistill { get; init; } = 1;
    /// <summary>
    /// Stage 3's foreground weight W (1: off): the connector's loss counts object pixels W times the background's
    /// (<c>ella train --foreground-weight</c>); the connector data then comes with masks, in <c>3-data-masks</c>.
    /// </summary>
    public double ConnectorForegroundWeight { get; init; } = 1;
    /// <summary>
    /// Stage 3's dense captions name colours, shapes, sizes and backgrounds with more words than the training lexicon's
    /// (<see cref="CaptionSynonyms"/>); the data and caches then go to <c>3-data-synonyms</c>, <c>3-cache-&lt;encoder&gt;-synonyms</c>,
    /// and the CLIP teacher reads each caption in the lexicon's own words.
    /// </summary>
    public bool ConnectorSynonyms { get; init; }
    /// <summary>
    /// What stage 3's frozen UNet (and teacher) compute in (the CLI's default <c>auto</c>: bf16 on a CPU with native bf16,
    /// as the shipped connectors); the connector keeps float32 weights either way.
    /// </summary>
    public ScalarType ConnectorComputeDtype { get; init; } = ScalarType.Float32;
    /// <summary>The command line, recorded in every safetensors the recipe writes.</summary>
    public string Command { get; init; } = "ella world train";

    public static readonly string[] ConnectorNames = ["tsc", "mlp", "resampler", "tsc-arctic-xs"];

    public static (string Type, TextEncoderKind Encoder) ConnectorKind(string name) => name switch
    {
        "tsc" => ("tsc", TextEncoderKind.MiniLM),
        "mlp" => ("mlp", TextEncoderKind.MiniLM),
        "resampler" => ("resampler", TextEncoderKind.MiniLM),
        "tsc-arctic-xs" => ("tsc", TextEncoderKind.ArcticXs),
        _ => throw new EllaException($"--connectors: '{name}' is not known (choose from: {string.Join(", ", ConnectorNames)})"),
    };
}

/// <summary>
/// The shapes world's recipe, end to end on a CPU, every stage resumable (run the same command again):
/// 1. VAE (reconstruction + small KL) → scaling_factor = 1/std of the latents;
/// 2. base: CLIP text encoder + UNet from scratch on SHORT captions, 10% caption dropout;
/// 3. everything frozen: connectors trained by <c>ella train</c>'s trainer on DENSE captions with frozen
///    MiniLM (or arctic-xs) features from a feature cache.
/// Stages 1–2 end by writing the diffusers folder; stage 3 adds ella/connector.safetensors and ablations/.
/// </summary>
public sealed class WorldRecipe(WorldTrainOptions o, TextWriter log)
{

    public void Run(CancellationToken cancellation)
    {
        Native.TorchRuntime.Initialize();
        foreach (var c in o.Connectors) WorldTrainOptions.ConnectorKind(c);
        var clock = Stopwatch.StartNew();
        string commit = WorldModelFolder.Commit();
        Directory.CreateDirectory(o.WorkDir);
        var tokenizer = ClipTokenizer.FromPretrained(o.ClipTokenizer);

        if (o.BaseFrom is { } trainedBase)
        {
            TrainConnectorsOn(trainedBase, commit, clock, cancellation);
            return;
        }

        // Stage 1: VAE (or a trained one).
        var (scaledVae, vaeConfig) = o.VaeFrom is { } from ? LoadVae(from) : TrainVae(cancellation);
        using var vaeOwner = scaledVae;

        // Stage 2: base model (CLIP + UNet) on short captions.
        manual_seed(o.Seed + 1);
        using var clip = new ClipTextModel(o.Sizes.Clip());
        using (no_grad())
            foreach (var (name, t) in clip.named_parameters())
                if (name.EndsWith("token_embedding.weight")) t.normal_(0, o.TokenEmbeddingStd);
                else if (name.EndsWith("embedding.weight")) t.normal_(0, 0.02); // as transformers initialises CLIP's embeddings
        using var unet = new UNet2DConditionModel(o.Sizes.UNet());
        using var unetCompute = o.BaseComputeDtype == ScalarType.Float32 ? null
            : new LowPrecisionCopy(unet, new UNet2DConditionModel(o.Sizes.UNet()), o.BaseComputeDtype);
        var scheduler = WorldModelSizes.Scheduler(o.Prediction, o.BetaSchedule);
        var objective = DiffusionObjective.FromConfig(scheduler, null);
        var baseStage = new BaseStage(scaledVae, clip, tokenizer, (UNet2DConditionModel?)unetCompute?.Copy ?? unet, objective,
            new WorldBatches(o.Base.Batch, o.Seed, offset: 1_000_000_000), o.CaptionDropout);
        if (unetCompute != null) log.WriteLine($"[base] mixed precision: the UNet computes in {unetCompute.DType}, float32 master weights");
        new StageLoop(Path.Combine(o.WorkDir, "2-base"), "base", o.Base with { Seed = o.Seed * 1000 + 2 }, log).Run(
            [new("text_encoder", clip), new("unet", unet, unetCompute)], baseStage.Loss, cancellation);

        var provenance = Provenance(commit);
        Directory.CreateDirectory(o.ModelDir);
        string vaeOut = Path.Combine(o.ModelDir, "vae");
        if (o.VaeFrom is { } vaeFrom)
        {
            // Copied as it is, so its metadata still names the command that trained it.
            Directory.CreateDirectory(vaeOut);
            if (Path.GetFullPath(vaeFrom) != Path.GetFullPath(vaeOut))
                foreach (var f in new[] { "config.json", "diffusion_pytorch_model.safetensors" })
                    File.Copy(Path.Combine(vaeFrom, f), Path.Combine(vaeOut, f), overwrite: true);
        }
        else
            WorldModelFolder.WriteComponent(vaeOut, "diffusion_pytorch_model.safetensors", vaeConfig, scaledVae,
                new Dictionary<string, string>(provenance) { ["steps"] = o.Vae.MaxSteps.ToString(CultureInfo.InvariantCulture) });
        WorldModelFolder.WriteComponent(Path.Combine(o.ModelDir, "text_encoder"), "model.safetensors", o.Sizes.Clip(), clip,
            new Dictionary<string, string>(provenance) { ["steps"] = o.Base.MaxSteps.ToString(CultureInfo.InvariantCulture) });
        WorldModelFolder.WriteComponent(Path.Combine(o.ModelDir, "unet"), "diffusion_pytorch_model.safetensors", o.Sizes.UNet(), unet,
            new Dictionary<string, string>(provenance) { ["steps"] = o.Base.MaxSteps.ToString(CultureInfo.InvariantCulture) });
        string tokDir = Path.Combine(o.ModelDir, "tokenizer");
        Directory.CreateDirectory(tokDir);
        foreach (var f in new[] { "vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json" })
            if (File.Exists(Path.Combine(o.ClipTokenizer, f)) && Path.GetFullPath(o.ClipTokenizer) != Path.GetFullPath(tokDir))
                File.Copy(Path.Combine(o.ClipTokenizer, f), Path.Combine(tokDir, f), overwrite: true);
        WorldModelFolder.SetTokenizerMaxLength(tokDir, o.Sizes.ClipMaxLength);
        string schedDir = Path.Combine(o.ModelDir, "scheduler");
        Directory.CreateDirectory(schedDir);
        File.WriteAllText(Path.Combine(schedDir, "scheduler_config.json"), scheduler.ToJson());
        WorldModelFolder.WriteIndex(o.ModelDir, o.Command);
        log.WriteLine($"[base] wrote {o.ModelDir}");

        // Stage 3: connectors on dense captions, everything else frozen.
        foreach (var name in o.Connectors) TrainConnector(name, scaledVae, provenance, cancellation);
        log.WriteLine($"done in {TrainingRun.Duration(clock.Elapsed.TotalSeconds)} (this run); model {o.ModelDir}");
    }

    /// <summary>What every weight file records about the run that produced it (each stage adds its steps).</summary>
    Dictionary<string, string> Provenance(string commit) => new()
    {
        ["produced_by"] = o.Command, ["seed"] = o.Seed.ToString(CultureInfo.InvariantCulture), ["commit"] = commit,
    };

    /// <summary>The parts of a world model that stages 1–2 produce (what <c>--base</c> reuses).</summary>
    public static readonly string[] BaseParts = ["vae", "text_encoder", "tokenizer", "unet", "scheduler"];

    /// <summary>Stage 3 alone, against a trained base (copied into the model folder first when that is another folder).</summary>
    void TrainConnectorsOn(string trainedBase, string commit, Stopwatch clock, CancellationToken cancellation)
    {
        if (Path.GetFullPath(trainedBase) != Path.GetFullPath(o.ModelDir))
        {
            foreach (var part in BaseParts)
            {
                string to = Path.Combine(o.ModelDir, part);
                Directory.CreateDirectory(to);
                foreach (var file in Directory.GetFiles(Path.Combine(trainedBase, part)))
                    File.Copy(file, Path.Combine(to, Path.GetFileName(file)), overwrite: true);
            }
            File.Copy(Path.Combine(trainedBase, "model_index.json"), Path.Combine(o.ModelDir, "model_index.json"), overwrite: true);
            log.WriteLine($"[base] copied the trained base {trainedBase} into {o.ModelDir}; stages 1–2 skipped");
        }
        else log.WriteLine($"[base] using the trained base in {trainedBase}; stages 1–2 skipped");
        var (vae, _) = LoadVae(Path.Combine(o.ModelDir, "vae"));
        using var vaeOwner = vae;
        var provenance = Provenance(commit);
        foreach (var name in o.Connectors) TrainConnector(name, vae, provenance, cancellation);
        log.WriteLine($"done in {TrainingRun.Duration(clock.Elapsed.TotalSeconds)} (this run); model {o.ModelDir}");
    }

    (AutoencoderKL Vae, AutoencoderKLConfig Config) TrainVae(CancellationToken cancellation)
    {
        manual_seed(o.Seed);
        using var vae = new AutoencoderKL(o.Sizes.Vae());
        string vaeDir = Path.Combine(o.WorkDir, "1-vae");
        var vaeData = new WorldBatches(o.Vae.Batch, o.Seed, offset: 0);
        using var preview = o.VaeLatentPreview > 0 ? new LatentPreview(o.Sizes.Vae().LatentChannels, o.VaeLatentPreview) : null;
        TrainableModule[] trained = preview == null ? [new("vae", vae)] : [new("vae", vae), new("vae-preview", preview)];
        if (preview != null) log.WriteLine($"[vae] latent preview regulariser, weight {o.VaeLatentPreview}");
        new StageLoop(vaeDir, "vae", o.Vae with { Seed = o.Seed * 1000 + 1 }, log).Run(trained,
            (step, rng) => VaeStage.Loss(vae, vaeData, step, rng, preview), cancellation);
        vae.eval();
        foreach (var p in vae.parameters()) p.requires_grad = false;
        double scaling = VaeStage.ScalingFactor(vae, o.Seed);
        var vaeConfig = o.Sizes.Vae();
        vaeConfig.ScalingFactor = Math.Round(scaling, 5);
        var scaledVae = new AutoencoderKL(vaeConfig);
        using (no_grad()) foreach (var (name, t) in scaledVae.state_dict()) t.copy_(vae.state_dict()[name]);
        Freeze(scaledVae);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[vae] scaling_factor {vaeConfig.ScalingFactor}"));
        return (scaledVae, vaeConfig);
    }

    (AutoencoderKL Vae, AutoencoderKLConfig Config) LoadVae(string folder)
    {
        foreach (var f in new[] { "config.json", "diffusion_pytorch_model.safetensors" })
            if (!File.Exists(Path.Combine(folder, f))) throw new EllaException($"--vae {folder}: no {f} in that folder (expected a diffusers vae/ folder)");
        var vae = AutoencoderKL.FromPretrained(folder);
        var config = vae.Config;
        if (config.LatentChannels != 4 || config.BlockOutChannels.Length != 3)
            throw new EllaException($"--vae {folder}: expected 4 latent channels and 3 blocks (4× down-sampling), found {config.LatentChannels} and {config.BlockOutChannels.Length}");
        Freeze(vae);
        log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[vae] using the trained VAE in {folder} (scaling_factor {config.ScalingFactor}); stage 1 skipped"));
        return (vae, config);
    }

    static void Freeze(AutoencoderKL vae)
    {
        vae.eval();
        foreach (var p in vae.parameters()) p.requires_grad = false;
    }

    void TrainConnector(string name, AutoencoderKL vae, Dictionary<string, string> provenance, CancellationToken cancellation)
    {
        var (type, encoder) = WorldTrainOptions.ConnectorKind(name);
        string encoderName = TextEncoderKinds.Name(encoder);
        string output = Path.Combine(o.WorkDir, $"3-connector-{name}");
        string trained = Path.Combine(output, "connector.safetensors");
        if (!File.Exists(trained))
        {
            string cache = EnsureCache(encoder, vae, cancellation);
            bool resume = TrainingCheckpoint.List(output).Count > 0;
            var options = new TrainingOptions
            {
                StableDiffusion = o.ModelDir, Cache = cache, Output = resume ? null : output, Resume = resume ? output : null,
                ConnectorType = type, Blocks = o.Sizes.ConnectorBlocks, MaxSteps = o.Connector.MaxSteps, Batch = o.Connector.Batch,
                Resolution = 64, Seed = o.Seed * 1000 + 3, CaptionDropout = o.CaptionDropout, Lr = o.Connector.Lr,
                LrSchedule = o.Connector.Schedule, WarmupSteps = o.Connector.WarmupSteps, SaveEvery = o.Connector.SaveEvery, KeepLast = 2,
                WeightDecay = o.Connector.WeightDecay, MaxGradNorm = o.Connector.MaxGradNorm,
                Distill = o.ConnectorDistill, ForegroundWeight = o.ConnectorForegroundWeight, DType = o.ConnectorComputeDtype,
                TeacherCaption = o.ConnectorSynonyms ? CaptionSynonyms.Canonical : null,
            };
            var outcome = TrainingRun.Run(options, new PrefixWriter(log, $"[{name}] "), cancellation);
            if (outcome == TrainingOutcome.Interrupted) throw new OperationCanceledException($"[{name}] interrupted; run the same command again to resume");
            if (outcome != TrainingOutcome.Completed) throw new EllaException($"[{name}] connector training diverged; see {output}/log.jsonl");
            LossPlot.Render(LossPlot.ReadLog(Path.Combine(output, "log.jsonl")), Path.Combine(output, "loss.png"));
        }
        string target = WorldModelFolder.ConnectorPath(o.ModelDir, name);
        WorldModelFolder.WriteConnector(target, trained, encoderName,
            new Dictionary<string, string>(provenance) { ["steps"] = o.Connector.MaxSteps.ToString(CultureInfo.InvariantCulture), ["connector"] = name });
        log.WriteLine($"[{name}] wrote {target}");
    }

    /// <summary>Index of the first connector scene in the training stream (the base's scenes come from other indices).</summary>
    public const long ConnectorDataStart = 2_000_000_000;

    /// <summary>The draws that reword one connector scene's caption: a stream of its own, so scenes and captions stay as without synonyms.</summary>
    WorldRandom SynonymRandom(long index) => new(WorldRandom.Derive(0x73796E6F6E796D73UL ^ (ulong)o.Seed, index));

    /// <summary>The connector data (scenes with dense captions, written once) and its feature cache for one text encoder.</summary>
    string EnsureCache(TextEncoderKind encoder, AutoencoderKL vae, CancellationToken cancellation)
    {
        bool masks = o.ConnectorForegroundWeight != 1;
        string suffix = (masks ? "-masks" : "") + (o.ConnectorSynonyms ? "-synonyms" : "");
        string data = Path.Combine(o.WorkDir, "3-data" + suffix);
        if (!File.Exists(Path.Combine(data, "done")))
        {
            log.WriteLine($"[data] writing {o.ConnectorSamples} scenes with dense captions{(o.ConnectorSynonyms ? " (with synonyms)" : "")}{(masks ? " and foreground masks" : "")} to {data}");
            var items = WorldFiles.Items(WorldSplit.Train, ConnectorDataStart, o.ConnectorSamples, o.Seed);
            if (o.ConnectorSynonyms)
                items = items.Select(item => item with { DenseCaption = CaptionSynonyms.Reword(item.DenseCaption, SynonymRandom(item.Index)) });
            WorldFiles.WriteSample(data, items, masks: masks);
            File.WriteAllText(Path.Combine(data, "done"), "");
        }
        string name = TextEncoderKinds.Name(encoder);
        string cache = Path.Combine(o.WorkDir, $"3-cache-{name}{suffix}");
        if (File.Exists(Path.Combine(cache, "done"))) return cache;
        using var text = TextEncoderFactory.Create(encoder, null);
        var dataset = ImageCaptionDatasets.Open([data], new ImagePreprocessing(64, false, false), m => log.WriteLine(m));
        var clock = Stopwatch.StartNew();
        var summary = FeatureCacheWriter.Write(cache, dataset, vae, text, new FeatureCacheWriteOptions
        {
            Preprocessing = new ImagePreprocessing(64, false, false), BatchSize = 64, SamplesPerFile = 1000, MaxLength = 128, Seed = o.Seed,
            TextEncoderName = name, VaeName = Path.Combine(o.ModelDir, "vae"),
        }, p => { if (p.Done % 1000 == 0) log.WriteLine($"[cache {name}] {p.Done}/{p.Total}"); }, m => log.WriteLine(m), cancellation);
        File.WriteAllText(Path.Combine(cache, "done"), "");
        log.WriteLine($"[cache {name}] {summary.Cached} samples in {clock.Elapsed.TotalSeconds:F0} s");
        return cache;
    }
}

/// <summary>Prefixes every line written through it (stage names in the recipe's log).</summary>
sealed class PrefixWriter(TextWriter inner, string prefix) : TextWriter
{
    public override System.Text.Encoding Encoding => inner.Encoding;
    public override void WriteLine(string? value) => inner.WriteLine(prefix + value);
    public override void Write(char value) => inner.Write(value);
}
