using System.Runtime.CompilerServices;
using TorchSharp;

namespace Ella.Weights;

/// <summary>A safetensors tensor a weight was read from, and the file's identity at that moment.</summary>
/// <param name="File">full path of the file</param>
/// <param name="Name">the tensor's name inside it</param>
/// <param name="Version">the file's length and last write time when it was read</param>
public sealed record WeightOrigin(string File, string Name, SafetensorsFile.FileVersion Version);

/// <summary>
/// Remembers which safetensors tensor each weight was loaded from (<see cref="SafetensorsFile.ReadInto"/> records it),
/// so that a weight patch such as a LoRA can restore a weight by reading it again, through the same conversion and so
/// bit for bit, instead of keeping a copy in memory. Only a hint: a user must check that the weight still equals the
/// stored tensor (<see cref="SafetensorsFile.Matches"/>) before relying on it. Entries live as long as the tensor object.
/// </summary>
public static class WeightOrigins
{
    static readonly ConditionalWeakTable<torch.Tensor, WeightOrigin> Table = new();

    internal static void Record(torch.Tensor weight, WeightOrigin origin) => Table.AddOrUpdate(weight, origin);

    public static bool TryGet(torch.Tensor weight, out WeightOrigin origin) => Table.TryGetValue(weight, out origin!);
}
