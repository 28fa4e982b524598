using static TorchSharp.torch;

namespace Ella.Training.Data;

/// <summary>How images are prepared for training: short side resized to <see cref="Resolution"/>, then a square crop.</summary>
public sealed record ImagePreprocessing(int Resolution, bool RandomCrop = false, bool RandomFlip = false);

/// <summary>
/// One image–caption pair, preprocessed: pixels [3, R, R] float32 in [-1, 1] on the CPU; with a loss mask, the mask
/// [1, R, R] in [0, 1] (1: the pixel belongs to the foreground), cropped and flipped as the pixels were.
/// </summary>
public sealed record ImageCaptionSample(string Key, Tensor Pixels, string Caption, Tensor? Mask = null) : IDisposable
{
    public void Dispose()
    {
        Pixels.Dispose();
        Mask?.Dispose();
    }
}

/// <summary>
/// Image–caption pairs in a fixed, deterministic order (indexable, so a run can resume at a data position). Readers:
/// <c>metadata.jsonl</c> (file_name, text), kohya-style sidecar <c>name.txt</c>, WebDataset <c>.tar</c> shards.
/// </summary>
public interface IImageCaptionDataset : IDisposable
{
    /// <summary>The folder or shards read, for messages.</summary>
    string Source { get; }

    /// <summary>Number of candidate samples (some may still be skipped when loaded).</summary>
    int Count { get; }

    /// <summary>
    /// Loads and preprocesses sample <paramref name="index"/>; random crop and flip draw from <paramref name="rng"/>.
    /// Returns null for a bad sample (corrupt image, missing or empty caption): the reason is recorded in
    /// <see cref="Skips"/> and a warning is written once per sample. Never throws for one bad sample.
    /// </summary>
    ImageCaptionSample? TryLoad(int index, Generator rng);

    /// <summary>Samples skipped so far, with their reasons.</summary>
    SkipCounter Skips { get; }

    /// <summary>The stable key of sample <paramref name="index"/> (unique in the dataset), without loading it.</summary>
    string KeyOf(int index) => index.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Why sample <paramref name="index"/> was skipped (one of <see cref="SkipReasons"/>), or null if it was not.</summary>
    string? SkipReasonOf(int index) => null;

    /// <summary>True when some sample names a loss mask (<c>"mask"</c> in <c>metadata.jsonl</c>).</summary>
    bool HasMasks => false;
}

/// <summary>Counts skipped samples by reason (for the run's summary); thread-safe.</summary>
public sealed class SkipCounter
{
    readonly Dictionary<string, int> _byReason = new();
    readonly Dictionary<string, string> _keys = new();
    readonly object _gate = new();

    /// <summary>Records a skip; true the first time this key is skipped (warn only then).</summary>
    public bool Add(string key, string reason)
    {
        lock (_gate)
        {
            if (!_keys.TryAdd(key, reason)) return false;
            _byReason[reason] = _byReason.GetValueOrDefault(reason) + 1;
            return true;
        }
    }

    public int Total { get { lock (_gate) return _keys.Count; } }

    /// <summary>The reason <paramref name="key"/> was skipped, or null.</summary>
    public string? ReasonFor(string key) { lock (_gate) return _keys.GetValueOrDefault(key); }

    public IReadOnlyDictionary<string, int> ByReason { get { lock (_gate) return new Dictionary<string, int>(_byReason); } }

    /// <summary>The sum of several counters (keys are assumed distinct across them), as a new counter.</summary>
    public static SkipCounter Combine(IEnumerable<SkipCounter> parts)
    {
        var all = new SkipCounter();
        int n = 0;
        foreach (var part in parts)
        {
            lock (part._gate)
                foreach (var (key, reason) in part._keys) all._keys.Add($"{n}\u0000{key}", reason);
            foreach (var (reason, count) in part.ByReason) all._byReason[reason] = all._byReason.GetValueOrDefault(reason) + count;
            n++;
        }
        return all;
    }

    /// <summary>"3 (corrupt image 1, empty caption 2)" for summaries.</summary>
    public override string ToString()
    {
        var by = ByReason;
        return by.Count == 0 ? "0" : $"{Total} ({string.Join(", ", by.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}"))})";
    }
}

/// <summary>
/// One cached sample: the VAE posterior, the caption's text features (flexible length) and, when the data had one, its
/// loss mask at latent resolution [1, h, w] (the pixel mask's average over each latent cell).
/// </summary>
public sealed record CachedSample(string Key, Tensor LatentMean, Tensor LatentStd, Tensor TextFeatures, string Caption, Tensor? Mask = null) : IDisposable
{
    public void Dispose()
    {
        LatentMean.Dispose();
        LatentStd.Dispose();
        TextFeatures.Dispose();
        Mask?.Dispose();
    }
}

/// <summary>
/// A feature cache written by <c>ella train cache</c>: per sample the VAE posterior (mean, std: [4, h, w], NOT yet
/// multiplied by scaling_factor) and the text features [L, D]; all returned as float32 CPU tensors. Training reads it
/// with no VAE or text encoder in memory.
/// </summary>
public interface IFeatureCache : IDisposable
{
    string Directory { get; }
    int Count { get; }
    /// <summary>Feature width D (the text encoder's hidden size).</summary>
    int TextFeatureDim { get; }
    /// <summary>The empty caption's features [L, D]: what a dropped caption (and the negative branch) sees.</summary>
    Tensor NullTextFeatures { get; }
    /// <summary>The VAE scaling_factor the latents must be multiplied by after sampling.</summary>
    double ScalingFactor { get; }
    /// <summary>True when some sample carries a loss mask.</summary>
    bool HasMasks => false;
    CachedSample Load(int index);
}
