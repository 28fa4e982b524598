using TorchSharp;

namespace Ella.Weights;

/// <summary>Name, dtype (safetensors name), shape and stored size of one tensor in a checkpoint.</summary>
public sealed record TensorInfo(string Name, string DType, long[] Shape, long ByteLength)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// A read-only, lazily read set of named tensors: one safetensors file, a sharded checkpoint, or a renaming view of
/// either. Tensors are materialised one at a time by <see cref="Read"/>, so a loader never holds a second full copy.
/// </summary>
public interface ITensorSource : IDisposable
{
    /// <summary>The file or folder, for messages.</summary>
    string Path { get; }
    IReadOnlyList<string> Names { get; }
    bool Contains(string name);
    TensorInfo GetInfo(string name);
    /// <summary>Reads one tensor onto the CPU, converted to <paramref name="dtype"/> when given.</summary>
    torch.Tensor Read(string name, torch.ScalarType? dtype = null);
    /// <summary>The safetensors <c>__metadata__</c> (merged across shards); empty when there is none.</summary>
    IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>
    /// <paramref name="names"/> in the order that reads the storage front to back (file, then offset), which lets
    /// the kernel stream a cold file instead of seeking; names this source does not hold keep their relative order.
    /// </summary>
    IEnumerable<string> ReadOrder(IEnumerable<string> names) => names;

    /// <summary>A hint that (nearly) every tensor is about to be read: start reading ahead.</summary>
    void PrefetchAll() { }

    /// <summary>Copies a tensor into <paramref name="destination"/> (same shape), converting the dtype.</summary>
    void ReadInto(string name, torch.Tensor destination)
    {
        using var value = Read(name, destination.dtype);
        using (torch.no_grad()) destination.copy_(value);
    }
}
