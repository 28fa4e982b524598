using System.Text;
using System.Text.Json;
using TorchSharp;

namespace Ella.Weights;

/// <summary>Writes <c>.safetensors</c> files atomically: a temporary file in the same folder, flushed, then renamed.</summary>
public static class SafetensorsWriter
{
    public static void Save(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var items = tensors.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList();
        var dupes = items.GroupBy(kv => kv.Key).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        if (dupes.Count > 0) throw new EllaException($"{path}: duplicate tensor names: {string.Join(", ", dupes)}");

        using var headerStream = new MemoryStream();
        using (var json = new Utf8JsonWriter(headerStream))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal)) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, t) in items)
            {
                long bytes = t.NumberOfElements * t.ElementSize;
                json.WriteStartObject(name);
                json.WriteString("dtype", SafetensorsDType.NameOf(t.dtype));
                json.WriteStartArray("shape");
                foreach (long d in t.shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        int pad = (int)((8 - headerStream.Length % 8) % 8);
        for (int i = 0; i < pad; i++) headerStream.WriteByte((byte)' ');

        string full = System.IO.Path.GetFullPath(path);
        string? dir = System.IO.Path.GetDirectoryName(full);
        if (dir != null) Directory.CreateDirectory(dir);
        string tmp = full + $".tmp-{Environment.ProcessId}";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
            {
                fs.Write(BitConverter.GetBytes((ulong)headerStream.Length));
                headerStream.Position = 0;
                headerStream.CopyTo(fs);
                foreach (var (_, t) in items)
                {
                    using var scope = torch.NewDisposeScope();
                    var c = t.detach().cpu().contiguous();
                    if (c.NumberOfElements > 0) WriteTensorBytes(fs, c);
                }
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    static void WriteTensorBytes(Stream fs, torch.Tensor contiguous)
    {
        using var flat = contiguous.view(-1);
        long total = flat.NumberOfElements;
        long chunk = Math.Max(1, (1L << 30) / contiguous.ElementSize);
        for (long start = 0; start < total; start += chunk)
        {
            using var part = flat.narrow(0, start, Math.Min(chunk, total - start));
            fs.Write(part.bytes);
        }
    }
}
