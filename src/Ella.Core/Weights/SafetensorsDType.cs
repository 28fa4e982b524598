using TorchSharp;

namespace Ella.Weights;

/// <summary>The dtypes of the safetensors format that EllaSharp reads and writes, with their torch equivalents.</summary>
public static class SafetensorsDType
{
    static readonly Dictionary<string, (torch.ScalarType Type, int Size)> ByName = new(StringComparer.Ordinal)
    {
        ["F64"] = (torch.ScalarType.Float64, 8),
        ["F32"] = (torch.ScalarType.Float32, 4),
        ["F16"] = (torch.ScalarType.Float16, 2),
        ["BF16"] = (torch.ScalarType.BFloat16, 2),
        ["I64"] = (torch.ScalarType.Int64, 8),
        ["I32"] = (torch.ScalarType.Int32, 4),
        ["I16"] = (torch.ScalarType.Int16, 2),
        ["I8"] = (torch.ScalarType.Int8, 1),
        ["U8"] = (torch.ScalarType.Byte, 1),
        ["BOOL"] = (torch.ScalarType.Bool, 1),
    };

    public static IReadOnlyCollection<string> Names => ByName.Keys;

    public static bool TryParse(string name, out torch.ScalarType type, out int elementSize)
    {
        if (ByName.TryGetValue(name, out var v)) { type = v.Type; elementSize = v.Size; return true; }
        type = default; elementSize = 0; return false;
    }

    public static string NameOf(torch.ScalarType type)
    {
        foreach (var (name, v) in ByName) if (v.Type == type) return name;
        throw new EllaException($"dtype {type} cannot be stored in safetensors");
    }

    public static bool IsFloating(torch.ScalarType t) =>
        t is torch.ScalarType.Float64 or torch.ScalarType.Float32 or torch.ScalarType.Float16 or torch.ScalarType.BFloat16;
}
