using System.Text.Json;

namespace Ella.Training.Data;

/// <summary>Image files of a folder tree, in ordinal order of their relative paths (hidden files and folders ignored).</summary>
internal static class ImageFiles
{
    public static readonly string[] Extensions = [".png", ".jpg", ".jpeg", ".webp"];

    public static bool IsImage(string path) => Extensions.Contains(Path.GetExtension(path).ToLowerInvariant());

    /// <summary>Relative paths with '/' separators, sorted ordinally.</summary>
    public static List<string> Under(string root)
    {
        var found = new List<string>();
        var pending = new Stack<string>();
        pending.Push(root);
        while (pending.Count > 0)
        {
            string dir = pending.Pop();
            foreach (var sub in Directory.EnumerateDirectories(dir))
                if (!Path.GetFileName(sub).StartsWith('.')) pending.Push(sub);
            foreach (var f in Directory.EnumerateFiles(dir))
                if (!Path.GetFileName(f).StartsWith('.') && IsImage(f)) found.Add(Relative(root, f));
        }
        found.Sort(StringComparer.Ordinal);
        return found;
    }

    public static string Relative(string root, string file) => Path.GetRelativePath(root, file).Replace('\\', '/');
}

/// <summary>
/// kohya-style sidecar captions: every <c>name.png|jpg|jpeg|webp</c> (in any subfolder) with its caption in
/// <c>name.txt</c> beside it. The key is the image's relative path.
/// </summary>
public sealed class SidecarCaptionDataset : ImageCaptionDatasetBase
{
    readonly string _root;
    readonly List<string> _images;

    public SidecarCaptionDataset(string folder, ImagePreprocessing preprocessing, Action<string>? warn = null) : base(folder, preprocessing, warn)
    {
        _root = folder;
        _images = ImageFiles.Under(folder);
    }

    public override int Count => _images.Count;
    public override string KeyOf(int index) => _images[index];

    protected override string? ReadCaption(int index)
    {
        string txt = Path.ChangeExtension(Path.Combine(_root, _images[index]), ".txt");
        return File.Exists(txt) ? File.ReadAllText(txt) : null;
    }

    protected override byte[]? ReadImage(int index)
    {
        string path = Path.Combine(_root, _images[index]);
        return File.Exists(path) ? File.ReadAllBytes(path) : null;
    }
}

/// <summary>
/// The Hugging Face imagefolder layout: <c>metadata.jsonl</c> with one JSON object per line, <c>file_name</c> (relative to
/// the folder) and <c>text</c> (the caption). Images in the folder without a metadata line are candidates with a missing
/// caption; metadata lines whose file is absent are missing images. The key is the file name. An optional <c>mask</c>
/// names a loss mask image of the same size (relative to the folder; white = foreground, for <c>--foreground-weight</c>).
/// </summary>
public sealed class ImageFolderDataset : ImageCaptionDatasetBase
{
    public const string MetadataFile = "metadata.jsonl";

    readonly string _root;
    readonly List<(string File, string? Caption, string? Mask)> _entries = [];

    public ImageFolderDataset(string folder, ImagePreprocessing preprocessing, Action<string>? warn = null) : base(folder, preprocessing, warn)
    {
        _root = folder;
        string metadata = Path.Combine(folder, MetadataFile);
        var captions = new Dictionary<string, (string? Text, string? Mask)>(StringComparer.Ordinal);
        int lineNumber = 0;
        foreach (var line in File.ReadLines(metadata))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string lineKey = $"{MetadataFile}:{lineNumber}";
            try
            {
                using var doc = JsonDocument.Parse(line);
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("file_name", out var name) || name.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(name.GetString()))
                {
                    Skip(lineKey, SkipReasons.BadMetadata, "no \"file_name\" string");
                    continue;
                }
                string file = name.GetString()!.Replace('\\', '/');
                string? text = doc.RootElement.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
                string? mask = doc.RootElement.TryGetProperty("mask", out var m) && m.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(m.GetString())
                    ? m.GetString()!.Replace('\\', '/') : null;
                if (!captions.TryAdd(file, (text, mask))) Skip(lineKey, SkipReasons.BadMetadata, $"duplicate file_name \"{file}\"");
            }
            catch (JsonException e)
            {
                Skip(lineKey, SkipReasons.BadMetadata, $"not valid JSON: {e.Message}");
            }
        }
        var masks = captions.Values.Select(v => v.Mask).Where(m => m is not null).ToHashSet(StringComparer.Ordinal);
        foreach (var image in ImageFiles.Under(folder))
            if (!masks.Contains(image)) captions.TryAdd(image, (null, null)); // a mask file is not a sample
        foreach (var (file, entry) in captions.OrderBy(kv => kv.Key, StringComparer.Ordinal)) _entries.Add((file, entry.Text, entry.Mask));
        HasMasks = masks.Count > 0;
    }

    public override int Count => _entries.Count;
    public override string KeyOf(int index) => _entries[index].File;
    public override bool HasMasks { get; }
    protected override string? ReadCaption(int index) => _entries[index].Caption;
    protected override string? MaskNameOf(int index) => _entries[index].Mask;

    protected override byte[]? ReadMask(int index)
    {
        string path = Path.Combine(_root, _entries[index].Mask!);
        return File.Exists(path) ? File.ReadAllBytes(path) : null;
    }

    protected override byte[]? ReadImage(int index)
    {
        string path = Path.Combine(_root, _entries[index].File);
        return File.Exists(path) ? File.ReadAllBytes(path) : null;
    }
}
