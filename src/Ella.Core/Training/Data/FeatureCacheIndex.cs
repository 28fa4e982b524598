using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ella.Training.Data;

/// <summary>
/// The JSON index one caching process writes beside its feature files: <c>index-IIIII-of-NNNNN.json</c>. A cache folder
/// holds one index per process shard; <see cref="FeatureCache.Open"/> reads them all as one cache. Samples name the
/// safetensors file and tensors that hold their features (bf16): the VAE posterior mean and std [C, h, w] (before
/// scaling_factor) and the caption's text features [L, D] at the caption's own length.
/// </summary>
public sealed record FeatureCacheIndex
{
    public const string FormatName = "ella-feature-cache";
    public const int CurrentVersion = 1;

    [JsonPropertyName("format")] public string Format { get; init; } = FormatName;
    [JsonPropertyName("version")] public int Version { get; init; } = CurrentVersion;
    [JsonPropertyName("shard")] public int Shard { get; init; }
    [JsonPropertyName("shard_count")] public int ShardCount { get; init; } = 1;
    [JsonPropertyName("complete")] public bool Complete { get; init; }
    [JsonPropertyName("settings")] public required FeatureCacheSettings Settings { get; init; }
    /// <summary>Candidate samples in the whole dataset (all shards).</summary>
    [JsonPropertyName("dataset_size")] public int DatasetSize { get; init; }
    /// <summary>The empty caption's features [L, D], stored once per process shard.</summary>
    [JsonPropertyName("null_text")] public required TensorRef NullText { get; init; }
    [JsonPropertyName("files")] public List<string> Files { get; init; } = [];
    [JsonPropertyName("samples")] public List<CachedSampleEntry> Samples { get; init; } = [];
    [JsonPropertyName("skipped")] public List<SkippedSampleEntry> Skipped { get; init; } = [];
    [JsonPropertyName("skip_counts")] public SortedDictionary<string, int> SkipCounts { get; init; } = [];

    public static string FileName(int shard, int count) => $"index-{shard:D5}-of-{count:D5}.json";

    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public static FeatureCacheIndex Read(string path)
    {
        try
        {
            var index = JsonSerializer.Deserialize<FeatureCacheIndex>(File.ReadAllText(path), Json)
                        ?? throw new EllaException($"{path}: empty feature-cache index");
            if (index.Format != FormatName) throw new EllaException($"{path}: not an EllaSharp feature-cache index (format '{index.Format}')");
            if (index.Version != CurrentVersion) throw new EllaException($"{path}: feature-cache version {index.Version}; this EllaSharp reads version {CurrentVersion}");
            return index;
        }
        catch (JsonException e)
        {
            throw new EllaException($"{path}: unreadable feature-cache index ({e.Message})");
        }
    }

    /// <summary>Writes atomically (temporary file, then rename).</summary>
    public void Write(string path)
    {
        string tmp = path + $".tmp-{Environment.ProcessId}";
        File.WriteAllText(tmp, JsonSerializer.Serialize(this, Json));
        File.Move(tmp, path, overwrite: true);
    }
}

/// <summary>What the features were made with; every shard of one cache must agree.</summary>
public sealed record FeatureCacheSettings
{
    /// <summary>The text encoder: its kind name (<c>t5</c>, <c>minilm</c>, <c>arctic-xs</c>); caches made before the kind was
    /// recorded hold the FLAN-T5 path here (see <see cref="TextEncoders.TextEncoderKinds.FromRecordedName"/>).</summary>
    [JsonPropertyName("text_encoder")] public required string TextEncoder { get; init; }
    /// <summary>The FLAN-T5 folder or repo id (t5 only; informative, not compared between shards).</summary>
    [JsonPropertyName("text_encoder_path")] public string? TextEncoderPath { get; init; }
    [JsonPropertyName("text_feature_dim")] public int TextFeatureDim { get; init; }
    [JsonPropertyName("max_length")] public int MaxLength { get; init; }
    [JsonPropertyName("vae")] public required string Vae { get; init; }
    [JsonPropertyName("vae_scaling_factor")] public double ScalingFactor { get; init; }
    [JsonPropertyName("latent_channels")] public int LatentChannels { get; init; }
    [JsonPropertyName("resolution")] public int Resolution { get; init; }
    [JsonPropertyName("random_crop")] public bool RandomCrop { get; init; }
    [JsonPropertyName("random_flip")] public bool RandomFlip { get; init; }
    [JsonPropertyName("seed")] public long Seed { get; init; }
    [JsonPropertyName("samples_per_file")] public int SamplesPerFile { get; init; }
    [JsonPropertyName("storage_dtype")] public string StorageDType { get; init; } = "bf16";

    /// <summary>
    /// The first setting that differs from <paramref name="other"/>, as "name: a vs b", or null. Model paths are not
    /// compared (the same model may be mounted at different paths by different workers); their shapes are, and so is
    /// the kind of text encoder (MiniLM and arctic-xs features have the same width but do not mix).
    /// </summary>
    public string? Difference(FeatureCacheSettings other)
    {
        var kind = TextEncoders.TextEncoderKinds.FromRecordedName(TextEncoder);
        var otherKind = TextEncoders.TextEncoderKinds.FromRecordedName(other.TextEncoder);
        if (kind != otherKind) return $"text_encoder: {TextEncoders.TextEncoderKinds.Name(kind)} vs {TextEncoders.TextEncoderKinds.Name(otherKind)}";
        var a = JsonSerializer.SerializeToElement(this, FeatureCacheIndex.Json);
        var b = JsonSerializer.SerializeToElement(other, FeatureCacheIndex.Json);
        foreach (var p in a.EnumerateObject())
        {
            if (p.Name is "text_encoder" or "text_encoder_path" or "vae") continue;
            string x = p.Value.GetRawText();
            string y = b.TryGetProperty(p.Name, out var v) ? v.GetRawText() : "(none)";
            if (x != y) return $"{p.Name}: {x} vs {y}";
        }
        return null;
    }
}

/// <summary>A tensor in a file of the cache folder.</summary>
public sealed record TensorRef([property: JsonPropertyName("file")] string File, [property: JsonPropertyName("tensor")] string Tensor);

/// <summary>One cached sample: its position in the dataset, key, caption and where its tensors are.</summary>
public sealed record CachedSampleEntry
{
    [JsonPropertyName("index")] public int Index { get; init; }
    [JsonPropertyName("key")] public required string Key { get; init; }
    [JsonPropertyName("caption")] public required string Caption { get; init; }
    [JsonPropertyName("file")] public required string File { get; init; }
    [JsonPropertyName("latent_mean")] public required string LatentMean { get; init; }
    [JsonPropertyName("latent_std")] public required string LatentStd { get; init; }
    [JsonPropertyName("text")] public required string Text { get; init; }
    [JsonPropertyName("text_length")] public int TextLength { get; init; }
    [JsonPropertyName("truncated")] public bool Truncated { get; init; }
    /// <summary>The loss mask [1, h, w] at latent resolution, when the data named one (absent otherwise).</summary>
    [JsonPropertyName("mask")] public string? Mask { get; init; }
}

/// <summary>A sample left out of the cache, and why (one of <see cref="SkipReasons"/>).</summary>
public sealed record SkippedSampleEntry(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("key")] string Key,
    [property: JsonPropertyName("reason")] string Reason);

/// <summary>The record a feature file carries in its safetensors metadata (<c>ella_cache</c>): which samples it covers.</summary>
public sealed record FeatureFileRecord
{
    public const string MetadataKey = "ella_cache";

    /// <summary>Keys of every dataset sample this file covers (cached or skipped), in order, with their indices.</summary>
    [JsonPropertyName("covers")] public List<int> Covers { get; init; } = [];
    [JsonPropertyName("cover_keys")] public List<string> CoverKeys { get; init; } = [];
    [JsonPropertyName("samples")] public List<CachedSampleEntry> Samples { get; init; } = [];
    [JsonPropertyName("skipped")] public List<SkippedSampleEntry> Skipped { get; init; } = [];
}
