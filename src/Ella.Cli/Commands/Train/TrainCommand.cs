using System.CommandLine;
using Ella.Hardware;
using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.TextEncoders;
using Ella.Training;
using static TorchSharp.torch;

namespace Ella.Cli.Commands.Train;

/// <summary>
/// <c>ella train</c>: trains a connector against a frozen Stable Diffusion UNet (<see cref="TrainingRun"/>);
/// <c>ella train cache</c> precomputes features; <c>ella train plot OUT</c> draws the loss curve.
/// </summary>
public static class TrainCommand
{
    public static Command Create(CliContext ctx)
    {
        var sd = new Option<string?>("--sd") { Description = "Stable Diffusion 1.x (its frozen UNet; its VAE when encoding live): folder, single file or cached repo id (env ELLA_SD)" };
        var t5 = new Option<string?>("--t5") { Description = "FLAN-T5 folder or repo id: encodes captions live (with --data) and the validation prompts (env ELLA_T5)" };
        var textEncoder = new Option<string?>("--text-encoder") { Description = "t5 (FLAN-T5 from --t5) | minilm | arctic-xs (packaged, no path needed); default: the cache's encoder with --cache, else t5 (the shapes world: its connector's)" };
        var cache = new Option<string?>("--cache") { Description = "Feature cache made by 'ella train cache' (no VAE or text encoder in memory)" };
        var data = new Option<string[]>("--data") { Description = "Training data encoded live: metadata.jsonl folder, images with .txt captions, or WebDataset .tar shards (repeatable)" };
        var output = new Option<string?>("--output", "-o") { Description = "Run folder: checkpoint-<step>/, log.jsonl, validation/, connector.safetensors" };
        var init = new Option<string?>("--init") { Description = "Start from an existing connector (e.g. the released one, to fine-tune it)" };
        var connector = new Option<string>("--connector") { Description = $"Fresh connector design without --init: {string.Join(" | ", Connectors.Types)}", DefaultValueFactory = _ => Connectors.Tsc };
        var blocks = new Option<int>("--blocks") { Description = "Perceiver blocks of a fresh connector", DefaultValueFactory = _ => 6 };
        var maxSteps = new Option<int>("--max-steps") { Description = "Optimizer steps", DefaultValueFactory = _ => 1000 };
        var batch = new Option<int>("--batch", "-b") { Description = "Samples per micro-batch", DefaultValueFactory = _ => 1 };
        var resolution = new Option<int>("--resolution") { Description = "Image size (short side resized, then cropped; multiple of 8)", DefaultValueFactory = _ => 512 };
        var seed = new Option<long>("--seed") { Description = "Seed of the data order, noise, timesteps, caption dropout and a fresh connector", DefaultValueFactory = _ => 0 };
        var snrGamma = new Option<double?>("--snr-gamma") { Description = "Min-SNR loss weighting with this gamma (e.g. 5); default plain MSE" };
        var captionDropout = new Option<double>("--caption-dropout") { Description = "Probability that a caption is replaced by the empty caption's features", DefaultValueFactory = _ => 0.1 };
        var distill = new Option<double>("--distill") { Description = "Weight W of a distillation term: loss = objective + W · MSE(prediction, the frozen UNet's prediction from --sd's own CLIP text encoder on the same caption); needs a diffusers folder with text_encoder/ and tokenizer/; 0 = off (the paper's objective)", DefaultValueFactory = _ => 0 };
        var foregroundWeight = new Option<double>("--foreground-weight") { Description = "Weight W of the foreground in the loss: each latent element's squared error counts 1 + (W − 1)·mask, the loss is their weighted mean; needs data whose metadata.jsonl names a \"mask\" image per sample (white = foreground), or a cache made from it; 1 = off", DefaultValueFactory = _ => 1 };
        var maxGradNorm = new Option<double>("--max-grad-norm") { Description = "Clip the global gradient norm (0 = no clipping)", DefaultValueFactory = _ => 1.0 };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate", DefaultValueFactory = _ => 1e-4 };
        var weightDecay = new Option<double>("--weight-decay") { Description = "AdamW decoupled weight decay", DefaultValueFactory = _ => 0.01 };
        var lrSchedule = new Option<string>("--lr-schedule") { Description = "constant | cosine | linear (after warm-up)", DefaultValueFactory = _ => "constant" };
        var warmup = new Option<int>("--warmup-steps") { Description = "Linear warm-up steps", DefaultValueFactory = _ => 0 };
        var gradAccum = new Option<int>("--grad-accum") { Description = "Micro-batches per optimizer step", DefaultValueFactory = _ => 1 };
        var dtype = new Option<string>("--dtype") { Description = "auto (bf16 with native bf16: AVX-512 BF16/AMX CPUs or CUDA; else fp32; a resumed run keeps its own) | fp32 | bf16 (frozen models in bf16; connector weights and AdamW state stay fp32)", DefaultValueFactory = _ => "auto" };
        var device = new Option<string>("--device") { Description = "cpu | cuda | cuda:N", DefaultValueFactory = _ => "cpu" };
        var saveEvery = new Option<int>("--save-every") { Description = "Checkpoint every N steps (and at the end)", DefaultValueFactory = _ => 500 };
        var keepLast = new Option<int>("--keep-last") { Description = "Checkpoints kept", DefaultValueFactory = _ => 3 };
        var resume = new Option<string?>("--resume") { Description = "Continue the run in OUT from its latest checkpoint" };
        var validationPrompts = new Option<string?>("--validation-prompts") { Description = "Text file, one prompt per line: a grid of images (fixed seeds) per validation" };
        var validateEvery = new Option<int>("--validate-every") { Description = "Validate every N steps (and at the end)", DefaultValueFactory = _ => 0 };
        var validationSteps = new Option<int>("--validation-steps") { Description = "Denoising steps (DPM++ 2M, CFG 7.5) of the validation images", DefaultValueFactory = _ => 20 };
        var randomCrop = new Option<bool>("--random-crop") { Description = "Random square crop (default: center crop), live data only" };
        var randomFlip = new Option<bool>("--random-flip") { Description = "Random horizontal flip, live data only" };
        var maxLength = new Option<int>("--max-length") { Description = "Captions keep their own length, truncated to this many T5 tokens", DefaultValueFactory = _ => 128 };
        var threads = new Option<int?>("--threads") { Description = "Intra-op threads (default: one per core)" };
        var target = new Option<string>("--target") { Description = "What is trained: connector | unet-lora (a LoRA on the UNet's attention projections, the connector from --init frozen; written as OUT/lora.safetensors in the kohya layout)", DefaultValueFactory = _ => TrainingOptions.TargetConnector };
        var rank = new Option<int>("--rank") { Description = "LoRA rank with --target unet-lora", DefaultValueFactory = _ => 4 };
        var loraAlpha = new Option<double?>("--lora-alpha") { Description = "LoRA alpha (the update is scaled by alpha/rank); default: the rank" };
        target.AcceptOnlyFromAmong(TrainingOptions.TargetConnector, TrainingOptions.TargetUNetLora);
        connector.AcceptOnlyFromAmong(Connectors.Types);
        lrSchedule.AcceptOnlyFromAmong(LearningRateSchedule.Kinds);
        dtype.AcceptOnlyFromAmong("auto", "fp32", "bf16", "fp16");
        textEncoder.AcceptOnlyFromAmong(TextEncoderKinds.Names);
        var command = new Command("train", "Train an ELLA connector against a frozen Stable Diffusion UNet (or, with --target unet-lora, a UNet LoRA with the connector frozen)")
        {
            sd, t5, textEncoder, cache, data, output, init, connector, blocks, maxSteps, batch, resolution, seed, snrGamma, captionDropout, distill, foregroundWeight, maxGradNorm,
            lr, weightDecay, lrSchedule, warmup, gradAccum, dtype, device, saveEvery, keepLast, resume, validationPrompts, validateEvery, validationSteps,
            randomCrop, randomFlip, maxLength, threads, target, rank, loraAlpha,
        };
        command.Subcommands.Add(TrainCacheCommand.Create(ctx));
        command.Subcommands.Add(CreatePlot(ctx));
        command.SetAction(p =>
        {
            if (p.GetValue(threads) is { } n) { if (n < 1) throw new EllaException($"--threads {n}: must be at least 1"); set_num_threads(n); }
            string? sdValue = p.GetValue(sd) ?? Environment.GetEnvironmentVariable("ELLA_SD");
            string? t5Value = p.GetValue(t5) ?? Environment.GetEnvironmentVariable("ELLA_T5");
            TextEncoderKind? kind = p.GetValue(textEncoder) is { } te ? TextEncoderKinds.Parse(te) : null;
            // No model flag and no model variable: train for the shapes world (its UNet; its connector's text encoder when encoding live).
            var world = p.GetValue(sd) == null && p.GetValue(t5) == null && kind == null && WorldDefaultModel.NoModelEnvironment() ? WorldDefaultModel.Locate() : null;
            if (world != null)
            {
                sdValue = world.Folder;
                if (p.GetValue(cache) == null) kind = world.TextEncoder;
            }
            double clip = p.GetValue(maxGradNorm);
            var options = new TrainingOptions
            {
                TextEncoder = kind,
                StableDiffusion = sdValue is null ? null : ModelLocator.Resolve(sdValue, "--sd"),
                T5 = t5Value is null ? null : ModelLocator.Resolve(t5Value, "--t5"),
                Cache = p.GetValue(cache), Data = p.GetValue(data) ?? [], Output = p.GetValue(output), Init = p.GetValue(init),
                ConnectorType = p.GetValue(connector)!, Blocks = p.GetValue(blocks), MaxSteps = p.GetValue(maxSteps), Batch = p.GetValue(batch),
                Resolution = p.GetValue(resolution), Seed = p.GetValue(seed), SnrGamma = p.GetValue(snrGamma),
                CaptionDropout = p.GetValue(captionDropout), Distill = p.GetValue(distill), ForegroundWeight = p.GetValue(foregroundWeight), MaxGradNorm = clip == 0 ? null : clip, Lr = p.GetValue(lr),
                WeightDecay = p.GetValue(weightDecay), LrSchedule = p.GetValue(lrSchedule)!, WarmupSteps = p.GetValue(warmup),
                GradAccum = p.GetValue(gradAccum), Device = PipelineCliOptions.ParseDevice(p.GetValue(device)!),
                SaveEvery = p.GetValue(saveEvery), KeepLast = p.GetValue(keepLast), Resume = p.GetValue(resume),
                ValidationPrompts = p.GetValue(validationPrompts), ValidateEvery = p.GetValue(validateEvery), ValidationSteps = p.GetValue(validationSteps),
                RandomCrop = p.GetValue(randomCrop), RandomFlip = p.GetValue(randomFlip), MaxLength = p.GetValue(maxLength),
                Target = p.GetValue(target)!, Rank = p.GetValue(rank), LoraAlpha = p.GetValue(loraAlpha),
            };
            var dtypeChoice = DTypeChoice.Resolve(p.GetValue(dtype)!, options.Device);
            if (dtypeChoice.Warning != null) ctx.Error.WriteLine($"warning: {dtypeChoice.Warning}");
            options.DType = dtypeChoice.DType;
            options.DTypeAuto = dtypeChoice.Auto;
            // The shapes world's LoRA is trained with the world's own connector unless --init names another.
            if (options.TrainsLora && options.Init == null && options.Resume == null && world?.HasConnector == true) options.Init = world.ConnectorPath;
            if (options.MaxGradNorm is null && clip != 0) throw new EllaException($"--max-grad-norm {clip}: must be ≥ 0");
            if (clip < 0) throw new EllaException($"--max-grad-norm {clip}: must be ≥ 0 (0 = no clipping)");
            return Run(ctx, options);
        });
        return command;
    }

    /// <summary>Runs training; the first Ctrl-C saves a checkpoint and exits (130), a second one kills the process.</summary>
    public static int Run(CliContext ctx, TrainingOptions options, CancellationToken cancellation = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        ConsoleCancelEventHandler handler = (_, e) =>
        {
            if (cts.IsCancellationRequested) return;
            e.Cancel = true;
            ctx.Error.WriteLine("stopping after this step (Ctrl-C again to kill)…");
            cts.Cancel();
        };
        Console.CancelKeyPress += handler;
        try
        {
            return TrainingRun.Run(options, ctx.Error, cts.Token) switch
            {
                TrainingOutcome.Completed => EllaCli.ExitOk,
                TrainingOutcome.Interrupted => 130,
                _ => EllaCli.ExitInternal,
            };
        }
        finally
        {
            Console.CancelKeyPress -= handler;
        }
    }

    static Command CreatePlot(CliContext ctx)
    {
        var dir = new Argument<string>("output") { Description = "A training run folder (with log.jsonl), or a log.jsonl file" };
        var png = new Option<string?>("--png", "-o") { Description = "Output PNG (default: OUT/loss.png)" };
        var command = new Command("plot", "Draw a run's loss curve (raw and smoothed) as a PNG") { dir, png };
        command.SetAction(p =>
        {
            string path = p.GetValue(dir)!;
            string log = File.Exists(path) ? path : Path.Combine(path, "log.jsonl");
            string target = p.GetValue(png) ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(log))!, "loss.png");
            var points = LossPlot.ReadLog(log);
            LossPlot.Render(points, target);
            ctx.Out.WriteLine($"wrote {target} ({points.Count} steps, last loss {points[^1].Loss:G5})");
            return EllaCli.ExitOk;
        });
        return command;
    }
}
