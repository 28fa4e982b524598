using System.Diagnostics;
using System.Text.Json;
using Ella.Modules.Vae;
using Ella.Text;
using Ella.TextEncoders;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Training.Data;

/// <summary>How <see cref="FeatureCacheWriter.Write"/> caches a dataset.</summary>
public sealed record FeatureCacheWriteOptions
{
    public required ImagePreprocessing Preprocessing { get; init; }
    /// <summary>This process takes dataset samples k with k mod <see cref="ShardCount"/> = <see cref="ShardIndex"/>.</summary>
    public int ShardIndex { get; init; }
    public int ShardCount { get; init; } = 1;
    /// <summary>Samples per feature file (the unit of atomic writing and of resumption).</summary>
    public int SamplesPerFile { get; init; } = 256;
    /// <summary>Images per VAE forward.</summary>
    public int BatchSize { get; init; } = 1;
    /// <summary>Text features keep each caption's own length, truncated to this many tokens (ELLA's 128).</summary>
    public int MaxLength { get; init; } = 128;
    /// <summary>Random crop and flip of sample k draw from a generator seeded with Seed + k.</summary>
    public long Seed { get; init; }
    /// <summary>The text encoder's kind name (<c>t5</c>, <c>minilm</c>, <c>arctic-xs</c>); empty: the encoder's own name.</summary>
    public string TextEncoderName { get; init; } = "";
    /// <summary>The FLAN-T5 folder or repo id the features came from (t5 only), for the record.</summary>
    public string? TextEncoderPath { get; init; }
    public string VaeName { get; init; } = "";
}

/// <summary>Where a caching run is: samples of this shard done (cached, skipped or found in finished files).</summary>
public sealed record FeatureCacheProgress(int Done, int Total, int Cached, int Skipped, int Reused, TimeSpan Elapsed)
{
    /// <summary>Estimated time left from the rate of the samples computed in this run (reused files excluded).</summary>
    public TimeSpan? Eta => Done - Reused > 0 && Done < Total ? Elapsed / (Done - Reused) * (Total - Done) : null;
}

/// <summary>What a caching run did.</summary>
public sealed record FeatureCacheSummary(int Total, int Cached, int Skipped, int Reused, int Truncated, int FilesWritten, int FilesReused,
    IReadOnlyDictionary<string, int> SkipsByReason, TimeSpan Elapsed);

/// <summary>
/// Writes a feature cache: per sample the VAE posterior mean and std [C, h, w] (before scaling_factor) and the caption's
/// text features [L, D] at its own length (truncated to MaxLength), and the loss mask at latent resolution [1, h, w] when
/// the data names one (see <see cref="LatentMask"/>), all bf16, in safetensors files of
/// <see cref="FeatureCacheWriteOptions.SamplesPerFile"/> samples, each written atomically and carrying the list of
/// samples it covers; and the empty caption's features once. After each file the process's JSON index
/// (<see cref="FeatureCacheIndex"/>) is rewritten. A rerun skips finished files (after checking they cover the same
/// samples), so an interrupted run continues where it stopped. Several processes (shards I/N) may write into one folder:
/// each writes only files and an index named with its own I and N.
/// </summary>
public static class FeatureCacheWriter
{
    public static string FeatureFileName(int shard, int count, int file) => $"features-{shard:D5}-of-{count:D5}-{file:D6}.safetensors";
    const int MaxTruncationWarnings = 5;

    public static string NullTextFileName(int shard, int count) => $"null-text-{shard:D5}-of-{count:D5}.safetensors";

    public static FeatureCacheSummary Write(string dir, IImageCaptionDataset data, AutoencoderKL vae, ITextFeatureEncoder text,
        FeatureCacheWriteOptions o, Action<FeatureCacheProgress>? progress = null, Action<string>? warn = null, CancellationToken cancel = default)
    {
        int factor = vae.Config.DownscaleFactor;
        var p = o.Preprocessing;
        if (o.ShardCount < 1 || o.ShardIndex < 0 || o.ShardIndex >= o.ShardCount) throw new EllaException($"--shard {o.ShardIndex}/{o.ShardCount}: expected I/N with 0 ≤ I < N");
        if (o.SamplesPerFile < 1) throw new EllaException($"--samples-per-file {o.SamplesPerFile}: must be at least 1");
        if (o.BatchSize < 1) throw new EllaException($"--batch {o.BatchSize}: must be at least 1");
        if (o.MaxLength < 1) throw new EllaException($"--max-length {o.MaxLength}: must be at least 1");
        if (p.Resolution <= 0 || p.Resolution % factor != 0) throw new EllaException($"--resolution {p.Resolution}: must be a positive multiple of {factor} (the VAE's downscale factor)");

        var settings = new FeatureCacheSettings
        {
            TextEncoder = o.TextEncoderName.Length > 0 ? o.TextEncoderName : text.Name,
            TextEncoderPath = o.TextEncoderPath,
            TextFeatureDim = text.HiddenSize,
            MaxLength = o.MaxLength,
            Vae = o.VaeName,
            ScalingFactor = vae.Config.ScalingFactor,
            LatentChannels = vae.Config.LatentChannels,
            Resolution = p.Resolution,
            RandomCrop = p.RandomCrop,
            RandomFlip = p.RandomFlip,
            Seed = o.Seed,
            SamplesPerFile = o.SamplesPerFile,
        };
        Directory.CreateDirectory(dir);
        CheckExisting(dir, settings, o.ShardCount);
        // leftovers of this shard's interrupted writes (only this shard writes these names)
        foreach (var stale in Directory.GetFiles(dir, $"*-{o.ShardIndex:D5}-of-{o.ShardCount:D5}*.tmp-*")) File.Delete(stale);

        var clock = Stopwatch.StartNew();
        var param = vae.parameters().First();
        var (device, dtype) = (param.device, param.dtype);
        var mine = Enumerable.Range(0, data.Count).Where(k => k % o.ShardCount == o.ShardIndex).ToList();
        int fileCount = (mine.Count + o.SamplesPerFile - 1) / o.SamplesPerFile;
        string nullFile = NullTextFileName(o.ShardIndex, o.ShardCount);
        if (!File.Exists(Path.Combine(dir, nullFile)))
        {
            using var mode = inference_mode();
            using var scope = NewDisposeScope();
            var features = EncodeText(text, "", o.MaxLength, out _);
            SafetensorsWriter.Save(Path.Combine(dir, nullFile), [new("text", features)]);
        }

        var records = new List<(string File, FeatureFileRecord Record)>();
        int cached = 0, skipped = 0, reused = 0, truncated = 0, written = 0, reusedFiles = 0, done = 0;
        var skips = new SortedDictionary<string, int>(StringComparer.Ordinal);
        void Count(FeatureFileRecord r)
        {
            foreach (var s in r.Skipped) skips[s.Reason] = skips.GetValueOrDefault(s.Reason) + 1;
            truncated += r.Samples.Count(s => s.Truncated);
        }
        void Report() => progress?.Invoke(new FeatureCacheProgress(done, mine.Count, cached, skipped, reused, clock.Elapsed));
        void SaveIndex(bool complete) => new FeatureCacheIndex
        {
            Shard = o.ShardIndex,
            ShardCount = o.ShardCount,
            Complete = complete,
            Settings = settings,
            DatasetSize = data.Count,
            NullText = new TensorRef(nullFile, "text"),
            Files = records.Select(r => r.File).ToList(),
            Samples = records.SelectMany(r => r.Record.Samples).ToList(),
            Skipped = records.SelectMany(r => r.Record.Skipped).ToList(),
            SkipCounts = new SortedDictionary<string, int>(skips, StringComparer.Ordinal),
        }.Write(Path.Combine(dir, FeatureCacheIndex.FileName(o.ShardIndex, o.ShardCount)));

        using var rng = new Generator(0);
        for (int f = 0; f < fileCount; f++)
        {
            cancel.ThrowIfCancellationRequested();
            var covers = mine.Skip(f * o.SamplesPerFile).Take(o.SamplesPerFile).ToList();
            var coverKeys = covers.Select(data.KeyOf).ToList();
            string name = FeatureFileName(o.ShardIndex, o.ShardCount, f);
            string path = Path.Combine(dir, name);
            if (File.Exists(path))
            {
                var existing = ReadRecord(path);
                if (!existing.Covers.SequenceEqual(covers) || !existing.CoverKeys.SequenceEqual(coverKeys, StringComparer.Ordinal))
                {
                    int at = Enumerable.Range(0, Math.Min(covers.Count, existing.CoverKeys.Count)).FirstOrDefault(i => existing.CoverKeys[i] != coverKeys[i] || existing.Covers[i] != covers[i]);
                    throw new EllaException($"{path}: this feature file was written from different data (it covers {existing.CoverKeys.ElementAtOrDefault(at) ?? "nothing"} where the data now has {coverKeys.ElementAtOrDefault(at) ?? "nothing"}); cache into a new --output folder");
                }
                records.Add((name, existing));
                Count(existing);
                reusedFiles++;
                cached += existing.Samples.Count;
                skipped += existing.Skipped.Count;
                reused += covers.Count;
                done += covers.Count;
                Report();
                continue;
            }

            var record = new FeatureFileRecord { Covers = covers, CoverKeys = coverKeys };
            var tensors = new List<KeyValuePair<string, Tensor>>();
            try
            {
                for (int b = 0; b < covers.Count; b += o.BatchSize)
                {
                    cancel.ThrowIfCancellationRequested();
                    var batch = covers.Skip(b).Take(o.BatchSize).ToList();
                    using var mode = inference_mode();
                    using var scope = NewDisposeScope();
                    var loaded = new List<(int Index, ImageCaptionSample Sample)>();
                    foreach (int k in batch)
                    {
                        rng.manual_seed(o.Seed + k);
                        var s = data.TryLoad(k, rng);
                        if (s == null)
                        {
                            string reason = data.SkipReasonOf(k) ?? "unreadable";
                            record.Skipped.Add(new SkippedSampleEntry(k, data.KeyOf(k), reason));
                            skipped++;
                            done++;
                            continue;
                        }
                        loaded.Add((k, s));
                    }
                    if (loaded.Count > 0)
                    {
                        var pixels = stack(loaded.Select(l => l.Sample.Pixels).ToArray()).to(dtype, device);
                        using var posterior = vae.Encode(pixels);
                        var mean = posterior.Mean.to(ScalarType.BFloat16).cpu();
                        var std = posterior.Std().to(ScalarType.BFloat16).cpu();
                        for (int i = 0; i < loaded.Count; i++)
                        {
                            var (k, sample) = loaded[i];
                            var features = EncodeText(text, sample.Caption, o.MaxLength, out bool cut);
                            if (cut && ++truncated <= MaxTruncationWarnings)
                                warn?.Invoke($"warning: {sample.Key}: caption truncated to {o.MaxLength} tokens{(truncated == MaxTruncationWarnings ? " (further truncation warnings suppressed; the summary counts them)" : "")}");
                            string prefix = k.ToString(System.Globalization.CultureInfo.InvariantCulture);
                            var entry = new CachedSampleEntry
                            {
                                Index = k, Key = sample.Key, Caption = sample.Caption, File = name,
                                LatentMean = prefix + ".latent_mean", LatentStd = prefix + ".latent_std", Text = prefix + ".text",
                                TextLength = (int)features.shape[0], Truncated = cut,
                                Mask = sample.Mask is null ? null : prefix + ".mask",
                            };
                            record.Samples.Add(entry);
                            tensors.Add(new(entry.LatentMean, mean[i].clone().DetachFromDisposeScope()));
                            tensors.Add(new(entry.LatentStd, std[i].clone().DetachFromDisposeScope()));
                            tensors.Add(new(entry.Text, features.DetachFromDisposeScope()));
                            if (sample.Mask is { } mask)
                                tensors.Add(new(entry.Mask!, LatentMask(mask, factor).to(ScalarType.BFloat16).contiguous().DetachFromDisposeScope()));
                            cached++;
                            done++;
                        }
                        foreach (var (_, sample) in loaded) sample.Dispose();
                    }
                    Report();
                }
                SafetensorsWriter.Save(path, tensors, new Dictionary<string, string>
                {
                    [FeatureFileRecord.MetadataKey] = JsonSerializer.Serialize(record, FeatureCacheIndex.Json),
                });
            }
            finally
            {
                foreach (var t in tensors) t.Value.Dispose();
            }
            foreach (var s in record.Skipped) skips[s.Reason] = skips.GetValueOrDefault(s.Reason) + 1;
            records.Add((name, record));
            written++;
            SaveIndex(complete: false);
        }
        SaveIndex(complete: true);
        return new FeatureCacheSummary(mine.Count, cached, skipped, reused, truncated, written, reusedFiles, skips, clock.Elapsed);
    }

    /// <summary>A pixel mask [1, R, R] as the latents see it: its mean over each factor × factor cell, [1, R/f, R/f].</summary>
    public static Tensor LatentMask(Tensor mask, int factor)
    {
        using var scope = NewDisposeScope();
        using var batch = mask.to(ScalarType.Float32).unsqueeze(0);
        return nn.functional.avg_pool2d(batch, factor, factor).squeeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>[L, D] bf16 CPU features of one caption, at its own length up to <paramref name="maxLength"/> tokens.</summary>
    static Tensor EncodeText(ITextFeatureEncoder encoder, string caption, int maxLength, out bool truncated)
    {
        using var scope = NewDisposeScope();
        var encoded = encoder.Encode(caption, TokenLength.Flexible, maxLength);
        truncated = false;
        if (encoded.Features.shape[1] > maxLength)
        {
            encoded.Dispose();
            encoded = encoder.Encode(caption, TokenLength.Fixed, maxLength);
            truncated = true;
        }
        using (encoded)
            return encoded.Features[0].to(ScalarType.BFloat16).cpu().contiguous().MoveToOuterDisposeScope();
    }

    static FeatureFileRecord ReadRecord(string path)
    {
        using var f = SafetensorsFile.Open(path);
        if (!f.Metadata.TryGetValue(FeatureFileRecord.MetadataKey, out var json))
            throw new EllaException($"{path}: not a feature-cache file (no '{FeatureFileRecord.MetadataKey}' metadata)");
        try
        {
            return JsonSerializer.Deserialize<FeatureFileRecord>(json, FeatureCacheIndex.Json) ?? throw new EllaException($"{path}: empty feature-cache record");
        }
        catch (JsonException e)
        {
            throw new EllaException($"{path}: unreadable feature-cache record ({e.Message})");
        }
    }

    /// <summary>Refuses a folder that holds a cache of another run (other shard count or settings).</summary>
    static void CheckExisting(string dir, FeatureCacheSettings settings, int shardCount)
    {
        foreach (var file in Directory.GetFiles(dir, "index-*-of-*.json").Order(StringComparer.Ordinal))
        {
            var index = FeatureCacheIndex.Read(file);
            if (index.ShardCount != shardCount)
                throw new EllaException($"{dir}: holds a cache made with {index.ShardCount} shards ({Path.GetFileName(file)}); this run uses {shardCount}: use the same shard count or a new --output folder");
            if (index.Settings.Difference(settings) is { } diff)
                throw new EllaException($"{dir}: holds a cache made with other settings ({Path.GetFileName(file)}: {diff}); use a new --output folder");
        }
    }
}
