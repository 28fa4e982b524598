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
        var items = tensors.ToList();
        var byName = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        var dupes = new List<string>();
        foreach (var (k, v) in items) if (!byName.TryAdd(k, v)) dupes.Add(k);
        if (dupes.Count > 0) throw new EllaException($"{path}: duplicate tensor names: {string.Join(", ", dupes)}");
        SaveStreaming(path, items.Select(kv => new TensorSpec(kv.Key, kv.Value.dtype, kv.Value.shape)).ToList(),
            spec => byName[spec.Name].alias(), metadata);
    }

    /// <summary>Name, dtype and shape of a tensor to be written by <see cref="SaveStreaming"/>.</summary>
    public sealed record TensorSpec(string Name, torch.ScalarType DType, long[] Shape);

    /// <summary>
    /// Writes tensors produced one at a time by <paramref name="produce"/> (each is disposed after writing), so a file
    /// larger than memory can be written. Tensors are stored in name order.
    /// </summary>
    public static void SaveStreaming(string path, IReadOnlyList<TensorSpec> specs, Func<TensorSpec, torch.Tensor> produce,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var items = specs.OrderBy(s => s.Name, StringComparer.Ordinal).ToList();
        var dupes = items.GroupBy(s => s.Name).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
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
            foreach (var spec in items)
            {
                SafetensorsDType.TryParse(SafetensorsDType.NameOf(spec.DType), out _, out int size);
                long bytes = spec.Shape.Aggregate(1L, (a, b) => a * b) * size;
                json.WriteStartObject(spec.Name);
                json.WriteString("dtype", SafetensorsDType.NameOf(spec.DType));
                json.WriteStartArray("shape");
                foreach (long d in spec.Shape) json.WriteNumberValue(d);
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
                foreach (var spec in items)
                {
                    using var scope = torch.NewDisposeScope();
                    var t = produce(spec);
                    if (t.dtype != spec.DType || !t.shape.SequenceEqual(spec.Shape))
                        throw new InvalidOperationException($"{spec.Name}: produced {t.dtype} [{string.Join(",", t.shape)}], declared {spec.DType} [{string.Join(",", spec.Shape)}]");
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
