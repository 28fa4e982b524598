using System.CommandLine;
using Ella.Hardware;
using Ella.World.Training;
using static TorchSharp.torch;

namespace Ella.Cli.Commands.World;

/// <summary>
/// <c>ella world train</c>: the shapes world's recipe (VAE → base CLIP + UNet on short captions → connectors on dense
/// captions with frozen MiniLM), resumable: the same command continues where it stopped.
/// </summary>
public static class WorldTrainCommand
{
    public static Command Create(CliContext ctx)
    {
        // The recipe's defaults, named once: the help texts below and the options built from the flags read them.
        var defaults = new WorldTrainOptions { WorkDir = "", ModelDir = "", ClipTokenizer = "" };
        var sizes = WorldModelSizes.Default;
        var output = new Option<string>("--out") { Description = "The diffusers folder to write (the shipped one is models/shapes-world)", DefaultValueFactory = _ => Path.Combine("models", "shapes-world") };
        var work = new Option<string>("--work") { Description = "Checkpoints, logs, loss plots and feature caches; rerun with the same --work to resume", DefaultValueFactory = _ => "world-train" };
        var clipTokenizer = new Option<string?>("--clip-tokenizer") { Description = "CLIP vocabulary folder (vocab.json + merges.txt); default: tests/data/clip of this repository" };
        var seed = new Option<long>("--seed") { Description = "Seed of the data stream and the initial weights", DefaultValueFactory = _ => 0 };
        var size = new Option<string>("--size") { Description = "Model sizes: default (the shipped model) | tiny (tests)", DefaultValueFactory = _ => "default" };
        var vaePreview = new Option<double?>("--vae-latent-preview") { Description = "Stage 1's latent-geometry regulariser weight W (default 0: off): a unit-norm linear map from the standardised latent must reproduce the image pooled to 16×16, so colours lie as far apart in the latent as in RGB" };
        var vaeSteps = new Option<int?>("--vae-steps") { Description = $"Stage 1 steps (default {defaults.Vae.MaxSteps}, batch {defaults.Vae.Batch})" };
        var baseSteps = new Option<int?>("--base-steps") { Description = $"Stage 2 steps (default {defaults.Base.MaxSteps}, batch {defaults.Base.Batch}; the shipped weights are the exponential moving average, decay 0.999)" };
        var connectorSteps = new Option<int?>("--connector-steps") { Description = $"Stage 3 steps per connector (default {defaults.Connector.MaxSteps}, batch {defaults.Connector.Batch})" };
        var connectorLr = new Option<double?>("--connector-lr") { Description = "Stage 3 peak learning rate per connector (default 3e-4; cosine after a short warm-up)" };
        var connectorDistill = new Option<double?>("--connector-distill") { Description = $"Stage 3: weight W of distillation from the base's own text pathway (loss = objective + W · MSE to the UNet's prediction from the base CLIP on the same dense caption; default {defaults.ConnectorDistill}, 0 = off)" };
        var connectorSynonyms = new Option<bool>("--connector-synonyms") { Description = "Stage 3: the dense captions name colours, shapes, sizes and backgrounds with more words than the base's lexicon (\"ruby\", \"navy\", \"tile\", …; none of the paraphrase set's); the CLIP teacher reads them in the base's words" };
        var connectorForeground = new Option<double?>("--connector-foreground-weight") { Description = "Stage 3: weight W of object pixels in the connector's loss (ella train --foreground-weight; the connector data is then written with masks; default 1 = off)" };
        var batch = new Option<int?>("--batch") { Description = $"Override the batch size of every stage (defaults: VAE {defaults.Vae.Batch}, base {defaults.Base.Batch}, connectors {defaults.Connector.Batch})" };
        var samples = new Option<int?>("--connector-samples") { Description = $"Scenes with dense captions for stage 3 (default {defaults.ConnectorSamples})" };
        var connectors = new Option<string>("--connectors") { Description = "Stage 3 connectors, comma-separated: tsc (ships as ella/), mlp, resampler, tsc-arctic-xs (ablations/)", DefaultValueFactory = _ => "tsc" };
        var vaeChannels = new Option<string?>("--vae-channels") { Description = "VAE block_out_channels, e.g. 16,32,64 (3 blocks: 4× down-sampling)" };
        var unetChannels = new Option<string?>("--unet-channels") { Description = "UNet block_out_channels, e.g. 64,128,128" };
        var prediction = new Option<string>("--prediction") { Description = "What the UNet predicts: v_prediction (the recipe: weights the high-noise steps where the caption decides the layout) | epsilon", DefaultValueFactory = _ => "v_prediction" };
        var betaSchedule = new Option<string>("--beta-schedule") { Description = "The base's noise schedule: squaredcos_cap_v2 (improved DDPM's cosine, the recipe: more of training and sampling at informative noise levels) | linear (DDPM's)", DefaultValueFactory = _ => defaults.BetaSchedule };
        var vaeFrom = new Option<string?>("--vae") { Description = "Skip stage 1 and use this trained VAE folder (config.json with scaling_factor + diffusion_pytorch_model.safetensors), e.g. models/shapes-world/vae; it is copied into --out unchanged" };
        var baseFrom = new Option<string?>("--base") { Description = "Skip stages 1–2 and train only the connectors (--connectors) against this trained shapes-world folder (vae/, text_encoder/, tokenizer/, unet/, scheduler/), e.g. models/shapes-world; a different --out gets a copy of those first" };
        var unetLayers = new Option<int?>("--unet-layers") { Description = $"UNet layers_per_block (default {sizes.UNetLayersPerBlock})" };
        var width = new Option<int?>("--width") { Description = $"Width of the base CLIP, the UNet's cross_attention_dim and the connectors (default {sizes.Width}; a multiple of 32: CLIP has width / 32 heads). Its token embedding is 49,408 × width, most of the text encoder's size" };
        var clipMaxLength = new Option<int?>("--clip-max-length") { Description = $"The base CLIP's context in tokens (max_position_embeddings and the tokenizer's model_max_length; default {sizes.ClipMaxLength}, as SD1.5's). A longer prompt in --mode clip is read in chunks of N − 2 tokens; the short captions are at most 16 words" };
        var tokenStd = new Option<double>("--token-embedding-std") { Description = "Initial std of the base CLIP's token embeddings (the recipe: 1.0, which makes the base read its words; 0.02 as transformers, see README)", DefaultValueFactory = _ => defaults.TokenEmbeddingStd };
        var threads = new Option<int?>("--threads") { Description = "Torch threads (default: physical cores)" };
        var dtype = new Option<string>("--dtype")
        {
            Description = "What the base stage's UNet computes in: auto (bf16 on a CPU with native bf16, as the shipped weights; else fp32, slower and other weights) | fp32 | bf16. " +
                          "bf16 is mixed precision: float32 master weights and optimizer state",
            DefaultValueFactory = _ => "auto",
        };
        var connectorDtype = new Option<string>("--connector-dtype")
        {
            Description = "What stage 3's frozen models compute in: auto (bf16 on a CPU with native bf16, as the shipped connectors; else fp32) | fp32 | bf16; the connector keeps float32 weights and AdamW state",
            DefaultValueFactory = _ => "auto",
        };
        var command = new Command("train", "Train the shapes world end to end (VAE, base model, connectors); resumable")
        {
            output, work, clipTokenizer, seed, size, vaeSteps, vaePreview, baseSteps, connectorSteps, connectorLr, connectorDistill, connectorSynonyms, connectorForeground, connectorDtype, batch, samples, connectors, vaeChannels, unetChannels, unetLayers, width, clipMaxLength, tokenStd, prediction, betaSchedule, vaeFrom, baseFrom, dtype, threads,
        };
        command.SetAction(p =>
        {
            if (p.GetValue(threads) is { } n) { if (n < 1) throw new EllaException($"--threads {n}: must be at least 1"); Native.TorchRuntime.Initialize(n); }
            if (p.GetValue(size) is not ("default" or "tiny")) throw new EllaException($"--size {p.GetValue(size)}: choose default or tiny");
            if (p.GetValue(prediction) is not ("v_prediction" or "epsilon")) throw new EllaException($"--prediction {p.GetValue(prediction)}: choose v_prediction or epsilon");
            if (p.GetValue(betaSchedule) is not ("linear" or "squaredcos_cap_v2")) throw new EllaException($"--beta-schedule {p.GetValue(betaSchedule)}: choose linear or squaredcos_cap_v2");
            if (p.GetValue(dtype) is not ("auto" or "fp32" or "bf16")) throw new EllaException($"--dtype {p.GetValue(dtype)}: choose auto, fp32 or bf16");
            var computeDtype = DTypeChoice.Resolve(p.GetValue(dtype)!);
            if (computeDtype.Warning is { } warning) ctx.Error.WriteLine($"warning: {warning}");
            if (p.GetValue(connectorDtype) is not ("auto" or "fp32" or "bf16")) throw new EllaException($"--connector-dtype {p.GetValue(connectorDtype)}: choose auto, fp32 or bf16");
            var connectorCompute = DTypeChoice.Resolve(p.GetValue(connectorDtype)!);
            if (connectorCompute.Warning is { } connectorWarning && p.GetValue(dtype) != p.GetValue(connectorDtype)) ctx.Error.WriteLine($"warning: {connectorWarning}");
            string tok = p.GetValue(clipTokenizer) ?? FindClipVocabulary();
            if (!File.Exists(Path.Combine(tok, "vocab.json")) || !File.Exists(Path.Combine(tok, "merges.txt")))
                throw new EllaException($"--clip-tokenizer {tok}: expected vocab.json and merges.txt in that folder");
            var names = p.GetValue(connectors)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (names.Length == 0) throw new EllaException("--connectors: name at least one connector");
            StageSettings Adjust(StageSettings s, int? steps, string flag)
            {
                if (steps is { } k && k < 1) throw new EllaException($"{flag} {k}: must be at least 1");
                if (p.GetValue(batch) is { } b && b < 1) throw new EllaException($"--batch {b}: must be at least 1");
                var r = s with { MaxSteps = steps ?? s.MaxSteps, Batch = p.GetValue(batch) ?? s.Batch };
                return r with { WarmupSteps = Math.Min(r.WarmupSteps, r.MaxSteps / 4), SaveEvery = Math.Min(r.SaveEvery, r.MaxSteps) };
            }
            if (p.GetValue(baseFrom) != null)
            {
                // Stages 1–2 do not run: their flags would silently do nothing.
                var stageFlags = new (string Flag, bool Given)[]
                {
                    ("--vae", p.GetValue(vaeFrom) != null), ("--vae-steps", p.GetValue(vaeSteps) != null), ("--vae-latent-preview", p.GetValue(vaePreview) != null), ("--base-steps", p.GetValue(baseSteps) != null),
                    ("--vae-channels", p.GetValue(vaeChannels) != null), ("--unet-channels", p.GetValue(unetChannels) != null),
                    ("--unet-layers", p.GetValue(unetLayers) != null), ("--width", p.GetValue(width) != null), ("--clip-max-length", p.GetValue(clipMaxLength) != null), ("--token-embedding-std", p.GetResult(tokenStd) is { Implicit: false }),
                    ("--prediction", p.GetResult(prediction) is { Implicit: false }), ("--beta-schedule", p.GetResult(betaSchedule) is { Implicit: false }), ("--dtype", p.GetResult(dtype) is { Implicit: false }),
                };
                if (stageFlags.Where(f => f.Given).Select(f => f.Flag).ToList() is { Count: > 0 } given)
                    throw new EllaException($"--base {p.GetValue(baseFrom)}: {string.Join(", ", given)} only change stages 1–2, which --base skips");
            }
            if (p.GetValue(samples) is { } cs && cs < 1) throw new EllaException($"--connector-samples {cs}: must be at least 1");
            var options = new WorldTrainOptions
            {
                WorkDir = p.GetValue(work)!, ModelDir = p.GetValue(output)!, ClipTokenizer = tok, Seed = p.GetValue(seed),
                Sizes = Sizes(p.GetValue(size) == "tiny" ? WorldModelSizes.Tiny : sizes, p.GetValue(vaeChannels), p.GetValue(unetChannels), p.GetValue(unetLayers), p.GetValue(width), p.GetValue(clipMaxLength)),
                BaseComputeDtype = computeDtype.DType,
                TokenEmbeddingStd = p.GetValue(tokenStd) is var std && double.IsFinite(std) && std > 0 ? std : throw new EllaException($"--token-embedding-std {p.GetValue(tokenStd)}: must be a positive number"),
                Vae = Adjust(defaults.Vae, p.GetValue(vaeSteps), "--vae-steps"),
                VaeLatentPreview = p.GetValue(vaePreview) is not { } vp ? 0
                    : double.IsFinite(vp) && vp >= 0 ? vp : throw new EllaException($"--vae-latent-preview {vp}: must be a number ≥ 0 (0: off)"),
                Base = Adjust(defaults.Base, p.GetValue(baseSteps), "--base-steps"),
                Connector = Adjust(defaults.Connector, p.GetValue(connectorSteps), "--connector-steps") with { Lr = ConnectorLr(p.GetValue(connectorLr)) ?? defaults.Connector.Lr },
                ConnectorSamples = p.GetValue(samples) ?? defaults.ConnectorSamples,
                ConnectorDistill = ConnectorDistill(p.GetValue(connectorDistill)) ?? defaults.ConnectorDistill,
                ConnectorForegroundWeight = p.GetValue(connectorForeground) is not { } fw ? 1
                    : double.IsFinite(fw) && fw > 0 ? fw : throw new EllaException($"--connector-foreground-weight {fw}: must be a positive number (1: off)"),
                ConnectorComputeDtype = connectorCompute.DType,
                ConnectorSynonyms = p.GetValue(connectorSynonyms),
                Connectors = names, Prediction = p.GetValue(prediction)!, BetaSchedule = p.GetValue(betaSchedule)!, VaeFrom = VaeFolder(p.GetValue(vaeFrom)),
                BaseFrom = BaseFolder(p.GetValue(baseFrom)),
                Command = "ella " + string.Join(' ', p.Tokens.Select(t => t.Value.Contains(' ') ? $"\"{t.Value}\"" : t.Value)),
            };
            foreach (var name in names) WorldTrainOptions.ConnectorKind(name);
            new WorldRecipe(options, ctx.Error).Run(ctx.Interrupt);
            ctx.Out.WriteLine(options.ModelDir);
            return EllaCli.ExitOk;
        });
        return command;
    }

    static double? ConnectorDistill(double? w) =>
        w is not { } v ? null : double.IsFinite(v) && v >= 0 ? v : throw new EllaException($"--connector-distill {v}: must be a number ≥ 0");

    static double? ConnectorLr(double? lr) =>
        lr is not { } v ? null : double.IsFinite(v) && v > 0 && v <= 1 ? v : throw new EllaException($"--connector-lr {v}: must be a number in (0, 1]");

    static string? VaeFolder(string? path)
    {
        if (path == null) return null;
        // The recipe checks the folder's files before any training starts (WorldRecipe.LoadVae).
        if (!Directory.Exists(path)) throw new EllaException($"--vae {path}: folder not found");
        return Path.GetFullPath(path);
    }

    static string? BaseFolder(string? path)
    {
        if (path == null) return null;
        if (!Directory.Exists(path)) throw new EllaException($"--base {path}: folder not found");
        foreach (var part in WorldRecipe.BaseParts)
            if (!Directory.Exists(Path.Combine(path, part)))
                throw new EllaException($"--base {path}: no {part}/ in that folder (expected a trained shapes-world model, e.g. models/shapes-world)");
        if (!File.Exists(Path.Combine(path, "model_index.json")))
            throw new EllaException($"--base {path}: no model_index.json in that folder (expected a trained shapes-world model, e.g. models/shapes-world)");
        return Path.GetFullPath(path);
    }

    static WorldModelSizes Sizes(WorldModelSizes s, string? vae, string? unet, int? unetLayers, int? width, int? clipMaxLength)
    {
        if (clipMaxLength is { } m)
        {
            if (m is < 8 or > 77) throw new EllaException($"--clip-max-length {m}: choose 8 to 77 tokens (the short captions need up to ~20 with BOS and EOS)");
            s = s with { ClipMaxLength = m };
        }
        if (width is { } w)
        {
            if (w < 32 || w % 32 != 0) throw new EllaException($"--width {w}: must be a positive multiple of 32 (CLIP's heads are 32 wide)");
            s = s with { Width = w };
        }
        if (unetLayers is { } l)
        {
            if (l is < 1 or > 4) throw new EllaException($"--unet-layers {l}: choose 1 to 4");
            s = s with { UNetLayersPerBlock = l };
        }
        int[] Parse(string text, string flag, int count)
        {
            var parts = text.Split(',', StringSplitOptions.TrimEntries);
            var values = parts.Select(v => int.TryParse(v, out int c) && c > 0 && c % 8 == 0 ? c : -1).ToArray();
            if (values.Length != count || values.Any(v => v < 0))
                throw new EllaException($"{flag} {text}: expected {count} comma-separated channel counts, each a positive multiple of 8");
            return values;
        }
        if (vae != null) s = s with { VaeChannels = Parse(vae, "--vae-channels", 3) };
        if (unet != null) s = s with { UNetChannels = Parse(unet, "--unet-channels", 3) };
        return s;
    }

    /// <summary>tests/data/clip, found from the current folder upwards (a clone of this repository).</summary>
    static string FindClipVocabulary()
    {
        for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "data", "clip");
            if (File.Exists(Path.Combine(candidate, "vocab.json"))) return candidate;
        }
        throw new EllaException("no CLIP vocabulary found: pass --clip-tokenizer DIR (vocab.json + merges.txt), or run inside a clone of this repository (tests/data/clip)");
    }
}
