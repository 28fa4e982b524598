using static TorchSharp.torch;

namespace Ella.Training.Data;

/// <summary>
/// Opens the <c>--data</c> paths of a training or caching run, detecting each one's layout:
/// a folder with <c>metadata.jsonl</c> (Hugging Face imagefolder); a <c>.tar</c> file, or a folder holding <c>.tar</c>
/// files and no images (WebDataset shards); else a folder of images with <c>.txt</c> sidecar captions (kohya style).
/// Several paths are read one after the other, in the order given (keys then start with the path's folder name).
/// Consecutive <c>.tar</c> file paths form one WebDataset.
/// </summary>
public static class ImageCaptionDatasets
{
    public static IImageCaptionDataset Open(IReadOnlyList<string> paths, ImagePreprocessing preprocessing, Action<string>? warn = null)
    {
        if (paths.Count == 0) throw new EllaException("--data: no training data given (pass --data DIR)");
        if (preprocessing.Resolution <= 0) throw new EllaException($"--resolution {preprocessing.Resolution}: must be a positive number of pixels");
        var groups = new List<(string Source, Func<IImageCaptionDataset> Open)>();
        var tarRun = new List<string>();
        void FlushTars()
        {
            if (tarRun.Count == 0) return;
            var files = tarRun.ToList();
            string source = files.Count == 1 ? files[0] : $"{files[0]} (+{files.Count - 1} more .tar)";
            groups.Add((source, () => new WebDatasetTarDataset(files, source, preprocessing, warn)));
            tarRun.Clear();
        }
        foreach (var path in paths)
        {
            if (File.Exists(path) && path.EndsWith(".tar", StringComparison.OrdinalIgnoreCase))
            {
                tarRun.Add(path);
                continue;
            }
            FlushTars();
            groups.Add((path, () => OpenOne(path, preprocessing, warn)));
        }
        FlushTars();

        var opened = new List<IImageCaptionDataset>();
        try
        {
            foreach (var (source, open) in groups)
            {
                var ds = open();
                opened.Add(ds);
                if (ds.Count == 0) throw new EllaException($"--data {source}: no samples found (expected metadata.jsonl, images with .txt captions, or WebDataset .tar shards)");
            }
        }
        catch
        {
            foreach (var d in opened) d.Dispose();
            throw;
        }
        return opened.Count == 1 ? opened[0] : new ConcatImageCaptionDataset(opened);
    }

    static IImageCaptionDataset OpenOne(string path, ImagePreprocessing preprocessing, Action<string>? warn)
    {
        if (File.Exists(path))
            throw new EllaException($"--data {path}: not a folder or a .tar file (pass a folder of images with captions, or WebDataset .tar shards)");
        if (!Directory.Exists(path)) throw new EllaException($"--data {path}: no such file or folder");
        if (File.Exists(Path.Combine(path, ImageFolderDataset.MetadataFile))) return new ImageFolderDataset(path, preprocessing, warn);
        var tars = Directory.GetFiles(path, "*.tar").Where(f => !Path.GetFileName(f).StartsWith('.')).ToList();
        if (tars.Count > 0 && !Directory.EnumerateFiles(path).Any(ImageFiles.IsImage))
            return new WebDatasetTarDataset(tars, path, preprocessing, warn);
        return new SidecarCaptionDataset(path, preprocessing, warn);
    }
}

/// <summary>Several datasets read one after the other; keys are prefixed with each source's name so they stay unique.</summary>
public sealed class ConcatImageCaptionDataset : IImageCaptionDataset
{
    readonly IReadOnlyList<IImageCaptionDataset> _parts;
    readonly int[] _starts;
    readonly string[] _prefixes;

    public ConcatImageCaptionDataset(IReadOnlyList<IImageCaptionDataset> parts)
    {
        _parts = parts;
        _starts = new int[parts.Count + 1];
        for (int i = 0; i < parts.Count; i++) _starts[i + 1] = checked(_starts[i] + parts[i].Count);
        var names = parts.Select(p => Path.GetFileName(p.Source.TrimEnd('/', '\\'))).ToArray();
        _prefixes = names.Select((n, i) => names.Count(x => x == n) > 1 ? $"{n}#{i}" : n).ToArray();
        Source = string.Join(", ", parts.Select(p => p.Source));
    }

    public string Source { get; }
    public int Count => _starts[^1];

    /// <summary>The skips of all parts, summed (a snapshot).</summary>
    public SkipCounter Skips => SkipCounter.Combine(_parts.Select(p => p.Skips));

    (int Part, int Local) Locate(int index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), $"sample {index} of {Count}");
        int part = Array.BinarySearch(_starts, index);
        part = part >= 0 ? part : ~part - 1;
        while (_starts[part + 1] <= index) part++;
        return (part, index - _starts[part]);
    }

    public ImageCaptionSample? TryLoad(int index, Generator rng)
    {
        var (part, local) = Locate(index);
        var s = _parts[part].TryLoad(local, rng);
        return s == null ? null : s with { Key = $"{_prefixes[part]}/{s.Key}" };
    }

    /// <summary>The key of sample <paramref name="index"/> without loading it.</summary>
    public string KeyOf(int index)
    {
        var (part, local) = Locate(index);
        return $"{_prefixes[part]}/{_parts[part].KeyOf(local)}";
    }

    public string? SkipReasonOf(int index)
    {
        var (part, local) = Locate(index);
        return _parts[part].SkipReasonOf(local);
    }

    public bool HasMasks => _parts.Any(p => p.HasMasks);

    public void Dispose()
    {
        foreach (var p in _parts) p.Dispose();
    }
}
