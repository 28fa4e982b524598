using System.CommandLine;
using System.Globalization;
using Ella.Cli.Commands.Dpg;
using Ella.Modules.Vae;
using Ella.Pipelines;
using Ella.TextEncoders;
using Ella.Training.Data;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Cli.Commands.Train;

/// <summary>
/// <c>ella train cache</c>: precomputes per sample the VAE posterior (mean, std) and the caption's text features into a
/// feature cache (<see cref="FeatureCacheWriter"/>), so that training needs neither the VAE nor the text encoder in
/// memory. Resumable (finished files are kept) and shardable like <c>ella dpg generate</c>.
/// </summary>
public static class TrainCacheCommand
{
    public static Command Create(CliContext ctx)
    {
        var sd = new Option<string?>("--sd") { Description = "Stable Diffusion 1.x whose VAE encodes the images: diffusers folder, single-file .safetensors, or repo id in the local HF cache (env ELLA_SD)" };
        var t5 = new Option<string?>("--t5") { Description = "FLAN-T5 folder or repo id, e.g. google/flan-t5-xl, for the t5 text encoder (env ELLA_T5)" };
        var textEncoder = new Option<string?>("--text-encoder") { Description = "t5 (FLAN-T5 from --t5) | minilm | arctic-xs (packaged, no path needed); default t5 (the shapes world: its connector's)" };
        var data = new Option<string[]>("--data") { Description = "Training data: a folder with metadata.jsonl, a folder of images with .txt captions, or WebDataset .tar shards (repeatable)", Required = true, AllowMultipleArgumentsPerToken = false };
        var output = new Option<string>("--output", "-o") { Description = "Cache folder (created; an interrupted run into it resumes)", Required = true };
        var resolution = new Option<int>("--resolution") { Description = "Short side resized to this, then a square crop (multiple of 8)", DefaultValueFactory = _ => 512 };
        var shard = new Option<string?>("--shard") { Description = "I/N: cache every N-th sample from offset I (default from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, with N from ELLA_SHARD_COUNT or SLURM_ARRAY_TASK_COUNT)" };
        var dtype = new Option<string>("--dtype") { Description = "Compute dtype of the VAE and T5: fp32 | bf16 (features are stored in bf16 either way)", DefaultValueFactory = _ => "fp32" };
        var batch = new Option<int>("--batch", "-b") { Description = "Images per VAE forward", DefaultValueFactory = _ => 1 };
        var maxLength = new Option<int>("--max-length") { Description = "Text features keep each caption's own length, truncated to this many T5 tokens", DefaultValueFactory = _ => 128 };
        var perFile = new Option<int>("--samples-per-file") { Description = "Samples per safetensors file (the unit of atomic writing and resumption)", DefaultValueFactory = _ => 256 };
        var randomCrop = new Option<bool>("--random-crop") { Description = "Random square crop (default: center crop); fixed per sample by --seed" };
        var randomFlip = new Option<bool>("--random-flip") { Description = "Random horizontal flip; fixed per sample by --seed" };
        var seed = new Option<long>("--seed") { Description = "Sample k's crop and flip use a generator seeded with seed + k", DefaultValueFactory = _ => 0 };
        var device = new Option<string>("--device") { Description = "cpu | cuda | cuda:N", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int?>("--threads") { Description = "Intra-op threads (default: one per core)" };
        dtype.AcceptOnlyFromAmong("fp32", "bf16");
        textEncoder.AcceptOnlyFromAmong(TextEncoderKinds.Names);
        var command = new Command("cache", "Precompute VAE latents (posterior mean and std) and text features of a training set, resumable and shardable")
        {
            sd, t5, textEncoder, data, output, resolution, shard, dtype, batch, maxLength, perFile, randomCrop, randomFlip, seed, device, threads,
        };
        command.SetAction(p =>
        {
            var prep = new ImagePreprocessing(p.GetValue(resolution), p.GetValue(randomCrop), p.GetValue(randomFlip));
            return Run(ctx, p.GetValue(sd), p.GetValue(t5), p.GetValue(textEncoder), p.GetValue(data)!, p.GetValue(output)!, prep, p.GetValue(shard), p.GetValue(dtype)!,
                p.GetValue(batch), p.GetValue(maxLength), p.GetValue(perFile), p.GetValue(seed), p.GetValue(device)!, p.GetValue(threads));
        });
        return command;
    }

    static int Run(CliContext ctx, string? sdOption, string? t5Option, string? textEncoderOption, string[] dataPaths, string output, ImagePreprocessing prep, string? shardOption,
        string dtypeName, int batch, int maxLength, int perFile, long seed, string deviceName, int? threads)
    {
        if (prep.Resolution <= 0 || prep.Resolution % 8 != 0) throw new EllaException($"--resolution {prep.Resolution}: must be a positive multiple of 8");
        if (batch < 1) throw new EllaException($"--batch {batch}: must be at least 1");
        if (maxLength < 1) throw new EllaException($"--max-length {maxLength}: must be at least 1");
        if (perFile < 1) throw new EllaException($"--samples-per-file {perFile}: must be at least 1");
        if (threads is < 1) throw new EllaException($"--threads {threads}: must be at least 1");
        var (index, count) = DpgGenerateCommand.ResolveShard(shardOption, Environment.GetEnvironmentVariable);
        var kind = textEncoderOption is null ? TextEncoderKind.T5 : TextEncoderKinds.Parse(textEncoderOption);
        string sdPath;
        // No model flag and no model variable: cache for the shapes world (its VAE, its connector's text encoder).
        if (sdOption == null && t5Option == null && textEncoderOption == null && WorldDefaultModel.NoModelEnvironment())
        {
            var world = WorldDefaultModel.Locate();
            sdPath = world.Folder;
            kind = world.TextEncoder;
        }
        else sdPath = ModelLocator.Require(sdOption, "ELLA_SD", "--sd", "Stable Diffusion (for its VAE)");
        string? t5Path = kind == TextEncoderKind.T5 ? ModelLocator.Require(t5Option, "ELLA_T5", "--t5", "the T5 text encoder") : null;
        if (t5Path == null && t5Option != null) ctx.Error.WriteLine($"warning: --t5 {t5Option} is not used: the text encoder is {TextEncoderKinds.Name(kind)}");
        var dtype = DTypes.Parse(dtypeName);
        var dev = PipelineCliOptions.ParseDevice(deviceName);
        if (threads is { } n) set_num_threads(n);

        using var dataset = ImageCaptionDatasets.Open(dataPaths, prep, m => ctx.Error.WriteLine(m));
        ctx.Error.WriteLine($"data: {dataset.Count} candidate samples in {dataset.Source}; shard {index}/{count}");
        using var vae = LoadVae(sdPath, dtype, dev);
        using var text = TextEncoderFactory.Create(kind, t5Path, dtype, dev);

        DateTime lastReport = DateTime.MinValue;
        void Progress(FeatureCacheProgress p)
        {
            if (p.Done < p.Total && DateTime.UtcNow - lastReport < TimeSpan.FromSeconds(2)) return;
            lastReport = DateTime.UtcNow;
            double rate = (p.Done - p.Reused) / Math.Max(1e-9, p.Elapsed.TotalSeconds);
            string eta = p.Eta is { } e ? Duration(e) : p.Done >= p.Total ? "0s" : "?";
            ctx.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"cache {index}/{count}: {p.Done}/{p.Total} samples ({100.0 * p.Done / Math.Max(1, p.Total):F1}%), {p.Skipped} skipped, {p.Reused} from earlier runs, {rate:F2} samples/s, ETA {eta}"));
            ctx.Error.Flush();
        }

        var summary = FeatureCacheWriter.Write(output, dataset, vae, text, new FeatureCacheWriteOptions
        {
            Preprocessing = prep,
            ShardIndex = index,
            ShardCount = count,
            SamplesPerFile = perFile,
            BatchSize = batch,
            MaxLength = maxLength,
            Seed = seed,
            TextEncoderName = TextEncoderKinds.Name(kind),
            TextEncoderPath = t5Option ?? t5Path,
            VaeName = sdOption ?? sdPath,
        }, Progress, m => ctx.Error.WriteLine(m));

        string skips = summary.SkipsByReason.Count == 0 ? "" : $" ({string.Join(", ", summary.SkipsByReason.Select(kv => $"{kv.Key}: {kv.Value}"))})";
        ctx.Out.WriteLine($"cached {summary.Cached} of {summary.Total} samples of shard {index}/{count} into {output} in {Duration(summary.Elapsed)}");
        ctx.Out.WriteLine($"skipped {summary.Skipped}{skips}");
        ctx.Out.WriteLine($"files: {summary.FilesWritten} written, {summary.FilesReused} kept from earlier runs ({summary.Reused} samples); truncated captions: {summary.Truncated}");
        return EllaCli.ExitOk;
    }

    /// <summary>The VAE only: a diffusers folder's <c>vae/</c> (or a VAE folder itself), or a single-file checkpoint's VAE.</summary>
    public static AutoencoderKL LoadVae(string sd, ScalarType dtype, Device device)
    {
        if (Directory.Exists(sd))
        {
            string vae = Path.Combine(sd, "vae");
            if (Directory.Exists(vae)) return AutoencoderKL.FromPretrained(vae, dtype, device);
            if (File.Exists(Path.Combine(sd, "config.json"))) return AutoencoderKL.FromPretrained(sd, dtype, device);
            throw new EllaException($"--sd {sd}: incomplete Stable Diffusion folder: 'vae/' is missing");
        }
        using var source = Checkpoint.Open(sd);
        if (!LdmCheckpointConverter.IsLdm(source))
            throw new EllaException($"--sd {sd}: not a Stable Diffusion checkpoint (no model.diffusion_model.* keys); pass a diffusers folder or an original single-file checkpoint");
        var (config, view) = LdmCheckpointConverter.Vae(source);
        return AutoencoderKL.FromSource(config, view, dtype, device);
    }

    static string Duration(TimeSpan t) => t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : t.TotalMinutes >= 1 ? $"{t.Minutes}m{t.Seconds:D2}s" : $"{t.TotalSeconds:F0}s";
}
