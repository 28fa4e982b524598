using System.Formats.Tar;
using System.Text;
using System.Text.Json;

namespace Ella.Training.Data;

/// <summary>
/// WebDataset shards: <c>.tar</c> files whose members are grouped into samples by key (the member path up to the first
/// dot of its file name): <c>key.jpg|jpeg|png|webp</c> with <c>key.txt</c>, or <c>key.json</c> holding a
/// <c>caption</c> (or <c>text</c>) string. Shards are read in sorted order, samples in sorted key order within a shard.
/// Opening scans the tar headers once (no image data is read); loading seeks to the member. The key is
/// <c>shard-name/key</c>.
/// </summary>
public sealed class WebDatasetTarDataset : ImageCaptionDatasetBase
{
    static readonly string[] ImageExtensions = ["jpg", "jpeg", "png", "webp"];

    readonly record struct Member(long Offset, long Length);

    sealed record Entry(int Tar, string Key, Member? Image, Member? Text, Member? Json);

    readonly List<string> _tars;
    readonly List<Entry> _entries = [];

    public WebDatasetTarDataset(IReadOnlyList<string> tarFiles, string source, ImagePreprocessing preprocessing, Action<string>? warn = null)
        : base(source, preprocessing, warn)
    {
        _tars = tarFiles.OrderBy(Path.GetFileName, StringComparer.Ordinal).ThenBy(f => f, StringComparer.Ordinal).ToList();
        for (int i = 0; i < _tars.Count; i++) Scan(i, warn);
    }

    void Scan(int tarIndex, Action<string>? warn)
    {
        string tar = _tars[tarIndex];
        string shard = Path.GetFileNameWithoutExtension(tar);
        var members = new Dictionary<string, Dictionary<string, Member>>(StringComparer.Ordinal);
        int count = 0;
        try
        {
            using var stream = File.OpenRead(tar);
            using var reader = new TarReader(stream);
            while (reader.GetNextEntry(copyData: false) is { } entry)
            {
                count++;
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)) continue;
                string name = entry.Name.Replace('\\', '/');
                int slash = name.LastIndexOf('/');
                int dot = name.IndexOf('.', slash + 1);
                if (dot <= slash + 1 || dot == name.Length - 1) continue;
                if (name[(slash + 1)..].StartsWith('.')) continue;
                string key = name[..dot];
                string ext = name[(dot + 1)..].ToLowerInvariant();
                if (!members.TryGetValue(key, out var parts)) members[key] = parts = new Dictionary<string, Member>(StringComparer.Ordinal);
                parts.TryAdd(ext, new Member(entry.DataOffset, entry.Length));
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException or FormatException or ArgumentException)
        {
            warn?.Invoke($"warning: {tar}: unreadable tar after {count} members ({e.Message}); using the samples before that point");
        }
        foreach (var (key, parts) in members.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            Member? image = null;
            foreach (var ext in ImageExtensions)
                if (parts.TryGetValue(ext, out var m)) { image = m; break; }
            Member? text = parts.TryGetValue("txt", out var t) ? t : null;
            Member? json = parts.TryGetValue("json", out var j) ? j : null;
            if (image == null && text == null && json == null) continue;
            _entries.Add(new Entry(tarIndex, $"{shard}/{key}", image, text, json));
        }
    }

    public override int Count => _entries.Count;
    public override string KeyOf(int index) => _entries[index].Key;

    byte[] Read(int tar, Member m)
    {
        if (m.Length > int.MaxValue) throw new InvalidDataException($"member of {m.Length} bytes is too large");
        using var stream = File.OpenRead(_tars[tar]);
        stream.Seek(m.Offset, SeekOrigin.Begin);
        var buffer = new byte[m.Length];
        stream.ReadExactly(buffer);
        return buffer;
    }

    protected override string? ReadCaption(int index)
    {
        var e = _entries[index];
        if (e.Text is { } text) return Encoding.UTF8.GetString(Read(e.Tar, text));
        if (e.Json is { } json)
        {
            using var doc = JsonDocument.Parse(Read(e.Tar, json));
            if (doc.RootElement.ValueKind != JsonValueKind.Object) return null;
            foreach (var field in new[] { "caption", "text" })
                if (doc.RootElement.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.String) return v.GetString();
        }
        return null;
    }

    protected override byte[]? ReadImage(int index)
    {
        var e = _entries[index];
        return e.Image is { } m ? Read(e.Tar, m) : null;
    }
}
