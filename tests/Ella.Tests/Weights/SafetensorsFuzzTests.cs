using Ella.Weights;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using static TorchSharp.torch;

namespace Ella.Tests.Weights;

/// <summary>
/// Random mutations of a valid file: the reader either opens it (and every tensor reads with the declared size) or
/// throws a <see cref="CheckpointException"/> — never another exception, a hang, or an allocation beyond the file.
/// </summary>
public class SafetensorsFuzzTests
{
    static readonly byte[] Valid = MakeValid();

    static byte[] MakeValid()
    {
        string path = Path.Combine(Path.GetTempPath(), $"ella-fuzz-{Guid.NewGuid():N}.safetensors");
        SafetensorsWriter.Save(path, new Dictionary<string, Tensor>
        {
            ["a.weight"] = randn(3, 4), ["b"] = arange(5, dtype: ScalarType.Int64), ["c"] = ones(2).to_type(ScalarType.BFloat16),
        }, new Dictionary<string, string> { ["format"] = "pt" });
        var bytes = File.ReadAllBytes(path);
        File.Delete(path);
        return bytes;
    }

    [Property(MaxTest = 300)]
    public Property Mutated_files_never_crash_the_reader(int seed, PositiveInt edits, bool truncate)
    {
        var rng = new Random(seed);
        var bytes = (byte[])Valid.Clone();
        int headerEnd = 8 + (int)BitConverter.ToUInt64(bytes, 0);
        for (int i = 0; i < Math.Min(edits.Get, 8); i++)
        {
            // Mostly hit the header, where the structure lives.
            int at = rng.Next(4) == 0 ? rng.Next(bytes.Length) : rng.Next(headerEnd);
            bytes[at] = rng.Next(3) switch { 0 => (byte)rng.Next(256), 1 => (byte)"0123456789"[rng.Next(10)], _ => (byte)"{}[]\":,"[rng.Next(7)] };
        }
        if (truncate) bytes = bytes.Take(rng.Next(bytes.Length)).ToArray();
        string path = Path.Combine(Path.GetTempPath(), $"ella-fuzz-{Guid.NewGuid():N}.safetensors");
        File.WriteAllBytes(path, bytes);
        try
        {
            using var f = SafetensorsFile.Open(path);
            foreach (var name in f.Names)
            {
                var info = f.GetInfo(name);
                Assert.True(info.ByteLength <= bytes.Length);
                using var t = f.Read(name);
                Assert.Equal(info.ElementCount, t.NumberOfElements);
            }
            return true.ToProperty();
        }
        catch (Ella.CheckpointException)
        {
            return true.ToProperty();
        }
        finally { File.Delete(path); }
    }
}
