using TorchSharp;

namespace Ella.Weights;

/// <summary>
/// A view of another source under other names: each exposed name reads an inner tensor, optionally transformed (for
/// example a 1×1 convolution weight reshaped to a linear one). Used to convert checkpoint layouts on load.
/// </summary>
public sealed class KeyMappedTensorSource : ITensorSource
{
    readonly ITensorSource _inner;
    readonly IReadOnlyDictionary<string, string> _map;
    readonly IReadOnlyDictionary<string, Func<torch.Tensor, torch.Tensor>> _transforms;
    readonly IReadOnlyDictionary<string, long[]> _shapes;
    readonly List<string> _names;

    /// <param name="map">exposed name → inner name</param>
    /// <param name="transforms">optional per exposed name: the transform and the shape it produces</param>
    public KeyMappedTensorSource(ITensorSource inner, IReadOnlyDictionary<string, string> map,
        IReadOnlyDictionary<string, (Func<torch.Tensor, torch.Tensor> Transform, long[] Shape)>? transforms = null)
    {
        _inner = inner;
        _map = map;
        _transforms = transforms?.ToDictionary(kv => kv.Key, kv => kv.Value.Transform) ?? new Dictionary<string, Func<torch.Tensor, torch.Tensor>>();
        _shapes = transforms?.ToDictionary(kv => kv.Key, kv => kv.Value.Shape) ?? new Dictionary<string, long[]>();
        _names = map.Keys.ToList();
    }

    public string Path => _inner.Path;
    public IReadOnlyList<string> Names => _names;
    public IReadOnlyDictionary<string, string> Metadata => _inner.Metadata;
    public bool Contains(string name) => _map.ContainsKey(name);

    public IEnumerable<string> ReadOrder(IEnumerable<string> names)
    {
        var list = names.ToList();
        var byInner = list.Where(_map.ContainsKey).ToLookup(n => _map[n]);
        var ordered = _inner.ReadOrder(byInner.Select(g => g.Key)).SelectMany(inner => byInner[inner]);
        return ordered.Concat(list.Where(n => !_map.ContainsKey(n)));
    }

    public TensorInfo GetInfo(string name)
    {
        var info = _inner.GetInfo(Inner(name)) with { Name = name };
        return _shapes.TryGetValue(name, out var shape) ? info with { Shape = shape } : info;
    }

    public torch.Tensor Read(string name, torch.ScalarType? dtype = null)
    {
        var t = _inner.Read(Inner(name), dtype);
        if (!_transforms.TryGetValue(name, out var transform)) return t;
        var result = transform(t);
        if (!ReferenceEquals(result, t)) t.Dispose();
        return result;
    }

    public void PrefetchAll() => _inner.PrefetchAll();

    public void ReadInto(string name, torch.Tensor destination)
    {
        if (!_transforms.ContainsKey(name)) { _inner.ReadInto(Inner(name), destination); return; }
        using var value = Read(name, destination.dtype);
        using (torch.no_grad()) destination.copy_(value);
    }

    string Inner(string name) => _map.TryGetValue(name, out var inner) ? inner : throw new CheckpointException($"{Path}: no tensor named '{name}'");

    /// <summary>Does not dispose the inner source: its owner does.</summary>
    public void Dispose() { }
}
