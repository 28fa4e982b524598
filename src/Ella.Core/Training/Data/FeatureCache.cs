using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Training.Data;

/// <summary>
/// Reads a feature cache folder written by <see cref="FeatureCacheWriter"/> (<c>ella train cache</c>): every
/// <c>index-*.json</c> in it (one per caching process), as one cache ordered by dataset position. Tensors come back as
/// float32 CPU tensors; feature files are opened on demand (memory-mapped) and at most <see cref="MaxOpenFiles"/> stay open.
/// </summary>
public sealed class FeatureCache : IFeatureCache
{
    public const int MaxOpenFiles = 64;

    readonly List<CachedSampleEntry> _samples;
    readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);
    readonly LinkedList<string> _recent = new();
    readonly object _gate = new();
    readonly Tensor _null;

    public string Directory { get; }
    public int Count => _samples.Count;
    public int TextFeatureDim => Settings.TextFeatureDim;
    public double ScalingFactor => Settings.ScalingFactor;
    public Tensor NullTextFeatures => _null;
    public bool HasMasks => _samples.Any(s => s.Mask is not null);
    public FeatureCacheSettings Settings { get; }
    /// <summary>True when every process shard finished; an incomplete cache is still readable.</summary>
    public bool IsComplete { get; }
    /// <summary>Samples the caching run skipped, by reason, over all shards.</summary>
    public IReadOnlyDictionary<string, int> SkipCounts { get; }
    /// <summary>Index files read.</summary>
    public IReadOnlyList<string> IndexFiles { get; }

    public IReadOnlyList<CachedSampleEntry> Samples => _samples;
    public string KeyOf(int index) => _samples[index].Key;
    public string CaptionOf(int index) => _samples[index].Caption;

    FeatureCache(string dir, FeatureCacheSettings settings, List<CachedSampleEntry> samples, bool complete,
        IReadOnlyDictionary<string, int> skips, IReadOnlyList<string> indexFiles, TensorRef nullText)
    {
        Directory = dir;
        Settings = settings;
        _samples = samples;
        IsComplete = complete;
        SkipCounts = skips;
        IndexFiles = indexFiles;
        using var f = SafetensorsFile.Open(Path.Combine(dir, nullText.File));
        _null = f.Read(nullText.Tensor, ScalarType.Float32).DetachFromDisposeScope();
    }

    /// <summary>
    /// Opens a cache folder. Throws <see cref="EllaException"/> when the folder has no index, the shards disagree, or it
    /// holds no samples; warns (through <paramref name="warn"/>) when some shards are missing or unfinished.
    /// </summary>
    public static FeatureCache Open(string dir, Action<string>? warn = null)
    {
        if (!System.IO.Directory.Exists(dir)) throw new EllaException($"--cache {dir}: no such folder");
        var files = System.IO.Directory.GetFiles(dir, "index-*-of-*.json").Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new EllaException($"--cache {dir}: not a feature cache (no index-*.json); make one with 'ella train cache'");
        var indexes = files.Select(FeatureCacheIndex.Read).ToList();
        var first = indexes[0];
        for (int i = 1; i < indexes.Count; i++)
        {
            if (indexes[i].ShardCount != first.ShardCount)
                throw new EllaException($"--cache {dir}: {Path.GetFileName(files[i])} belongs to a run with {indexes[i].ShardCount} shards, {Path.GetFileName(files[0])} to one with {first.ShardCount}; keep one run per folder");
            if (indexes[i].Settings.Difference(first.Settings) is { } diff)
                throw new EllaException($"--cache {dir}: {Path.GetFileName(files[i])} and {Path.GetFileName(files[0])} were made with different settings ({diff})");
        }
        var present = indexes.Select(x => x.Shard).ToHashSet();
        var missing = Enumerable.Range(0, first.ShardCount).Where(s => !present.Contains(s)).ToList();
        var unfinished = indexes.Where(x => !x.Complete).Select(x => x.Shard).ToList();
        bool complete = missing.Count == 0 && unfinished.Count == 0;
        var samples = indexes.SelectMany(x => x.Samples).OrderBy(s => s.Index).ToList();
        if (samples.Count == 0) throw new EllaException($"--cache {dir}: the cache holds no samples");
        if (!complete)
            warn?.Invoke($"warning: {dir}: incomplete feature cache ({(missing.Count > 0 ? $"shards {string.Join(", ", missing)} of {first.ShardCount} missing" : "")}{(missing.Count > 0 && unfinished.Count > 0 ? "; " : "")}{(unfinished.Count > 0 ? $"shards {string.Join(", ", unfinished)} unfinished" : "")}); using the {samples.Count} samples present");
        var skips = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var x in indexes)
            foreach (var (reason, n) in x.SkipCounts) skips[reason] = skips.GetValueOrDefault(reason) + n;
        return new FeatureCache(dir, first.Settings, samples, complete, skips, files, first.NullText);
    }

    SafetensorsFile File(string name)
    {
        if (_open.TryGetValue(name, out var f))
        {
            _recent.Remove(name);
            _recent.AddFirst(name);
            return f;
        }
        f = SafetensorsFile.Open(Path.Combine(Directory, name));
        _open[name] = f;
        _recent.AddFirst(name);
        while (_recent.Count > MaxOpenFiles)
        {
            string old = _recent.Last!.Value;
            _recent.RemoveLast();
            _open.Remove(old, out var closing);
            closing?.Dispose();
        }
        return f;
    }

    public CachedSample Load(int index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), $"sample {index} of {Count}");
        var s = _samples[index];
        lock (_gate)
        {
            var f = File(s.File);
            Tensor? mean = null, std = null;
            try
            {
                mean = f.Read(s.LatentMean, ScalarType.Float32);
                std = f.Read(s.LatentStd, ScalarType.Float32);
                var text = f.Read(s.Text, ScalarType.Float32);
                var mask = s.Mask is null ? null : f.Read(s.Mask, ScalarType.Float32);
                return new CachedSample(s.Key, mean, std, text, s.Caption, mask);
            }
            catch
            {
                mean?.Dispose();
                std?.Dispose();
                throw;
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var f in _open.Values) f.Dispose();
            _open.Clear();
            _recent.Clear();
        }
        _null.Dispose();
    }
}
