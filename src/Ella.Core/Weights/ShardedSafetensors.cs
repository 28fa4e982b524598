using System.Text.Json;
using TorchSharp;

namespace Ella.Weights;

/// <summary>
/// A Hugging Face sharded checkpoint: <c>*.safetensors.index.json</c> whose <c>weight_map</c> names the shard of each
/// tensor. Shards are opened (and validated) once, on first use of one of their tensors.
/// </summary>
public sealed class ShardedSafetensors : ITensorSource
{
    readonly Dictionary<string, string> _weightMap;
    readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);
    readonly List<string> _names;
    readonly string _dir;
    Dictionary<string, string>? _metadata;

    public string Path { get; }
    public IReadOnlyList<string> Names => _names;
    public IReadOnlyList<string> ShardFiles { get; }

    ShardedSafetensors(string path, Dictionary<string, string> weightMap)
    {
        Path = path;
        _dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        _weightMap = weightMap;
        _names = weightMap.Keys.ToList();
        ShardFiles = weightMap.Values.Distinct().ToList();
    }

    public static ShardedSafetensors Open(string indexPath)
    {
        if (!File.Exists(indexPath)) throw new CheckpointException($"{indexPath}: file not found");
        Dictionary<string, string> map;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(indexPath));
            if (!doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{indexPath}: the index has no 'weight_map' object");
            map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointException($"{indexPath}: weight_map['{p.Name}'] must be a file name");
                string shard = p.Value.GetString()!;
                if (shard.Contains('/') || shard.Contains('\\') || shard == ".." )
                    throw new CheckpointException($"{indexPath}: weight_map['{p.Name}'] = '{shard}' must be a file name in the same folder");
                map[p.Name] = shard;
            }
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{indexPath}: not valid JSON ({e.Message})", e);
        }
        var result = new ShardedSafetensors(indexPath, map);
        foreach (var shard in result.ShardFiles)
            if (!File.Exists(System.IO.Path.Combine(result._dir, shard)))
                throw new CheckpointException($"{indexPath}: shard '{shard}' is missing from {result._dir}");
        return result;
    }

    SafetensorsFile Shard(string file)
    {
        if (!_open.TryGetValue(file, out var s))
        {
            s = SafetensorsFile.Open(System.IO.Path.Combine(_dir, file));
            _open[file] = s;
        }
        return s;
    }

    SafetensorsFile ShardOf(string name)
    {
        if (!_weightMap.TryGetValue(name, out var file)) throw new CheckpointException($"{Path}: no tensor named '{name}'");
        var shard = Shard(file);
        if (!shard.Contains(name)) throw new CheckpointException($"{Path}: the index puts '{name}' in {file}, but that shard does not hold it");
        return shard;
    }

    public bool Contains(string name) => _weightMap.ContainsKey(name);

    public IEnumerable<string> ReadOrder(IEnumerable<string> names) =>
        names.OrderBy(n => _weightMap.TryGetValue(n, out var f) ? f : "\uffff", StringComparer.Ordinal)
             .ThenBy(n => _weightMap.TryGetValue(n, out var f) ? Shard(f).OffsetOf(n) : long.MaxValue);
    public TensorInfo GetInfo(string name) => ShardOf(name).GetInfo(name);
    public torch.Tensor Read(string name, torch.ScalarType? dtype = null) => ShardOf(name).Read(name, dtype);
    public void ReadInto(string name, torch.Tensor destination) => ShardOf(name).ReadInto(name, destination);
    public void PrefetchAll() { foreach (var f in ShardFiles) Shard(f).PrefetchAll(); }

    public IReadOnlyDictionary<string, string> Metadata
    {
        get
        {
            if (_metadata == null)
            {
                _metadata = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var f in ShardFiles)
                    foreach (var (k, v) in Shard(f).Metadata) _metadata.TryAdd(k, v);
            }
            return _metadata;
        }
    }

    public void Dispose()
    {
        foreach (var s in _open.Values) s.Dispose();
        _open.Clear();
    }
}
