using System.Text;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Weights;

public sealed class SafetensorsTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-st-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    string TempPath(string name) => Path.Combine(_dir, name);

    /// <summary>Builds a raw safetensors file from a header JSON string and a data section.</summary>
    string Raw(string name, string header, byte[] data)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = BitConverter.GetBytes((ulong)h.Length).Concat(h).Concat(data).ToArray();
        string path = TempPath(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void Round_trip_keeps_every_dtype_and_metadata()
    {
        var tensors = new Dictionary<string, Tensor>
        {
            ["f32"] = randn(3, 4),
            ["f64"] = randn(2, dtype: ScalarType.Float64),
            ["f16"] = randn(5).to_type(ScalarType.Float16),
            ["bf16"] = randn(2, 2).to_type(ScalarType.BFloat16),
            ["i64"] = arange(6, dtype: ScalarType.Int64).reshape(2, 3),
            ["i32"] = arange(4, dtype: ScalarType.Int32),
            ["i16"] = arange(4, dtype: ScalarType.Int16),
            ["i8"] = tensor(new sbyte[] { -3, 4 }),
            ["u8"] = tensor(new byte[] { 1, 255 }),
            ["bool"] = tensor(new[] { true, false, true }),
            ["scalar"] = tensor(3.5f),
            ["empty"] = zeros(0, 3),
        };
        string path = TempPath("all.safetensors");
        SafetensorsWriter.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "hello" });
        using var f = SafetensorsFile.Open(path);
        Assert.Equal("hello", f.Metadata["note"]);
        Assert.Equal(tensors.Keys.Order(), f.Names.Order());
        foreach (var (name, t) in tensors)
        {
            using var back = f.Read(name);
            Assert.Equal(t.dtype, back.dtype);
            Assert.Equal(t.shape, back.shape);
            Assert.True(t.eq(back).all().item<bool>(), name);
        }
        using var converted = f.Read("f16", ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, converted.dtype);
        Assert.True(converted.allclose(tensors["f16"].to_type(ScalarType.Float32)));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp*"));
    }

    /// <summary>The Hugging Face cache links every snapshot file to its blob: a link opens as the file it points to.</summary>
    [Fact]
    public void A_symbolic_link_to_a_safetensors_file_opens_as_that_file()
    {
        var t = arange(1000, dtype: ScalarType.Float32);
        string blob = TempPath("blob");
        SafetensorsWriter.Save(blob, new Dictionary<string, Tensor> { ["t"] = t });
        string link = TempPath("model.safetensors");
        File.CreateSymbolicLink(link, blob);
        using var f = SafetensorsFile.Open(link);
        using var back = f.Read("t");
        Assert.True(back.eq(t).all().item<bool>());
    }

    [Fact]
    public void Large_tensors_are_copied_in_chunks()
    {
        long saved = SafetensorsFile.CopyChunkBytes;
        try
        {
            SafetensorsFile.CopyChunkBytes = 12; // 3 floats at a time
            var t = arange(100, dtype: ScalarType.Float32).reshape(10, 10);
            string path = TempPath("chunks.safetensors");
            SafetensorsWriter.Save(path, new Dictionary<string, Tensor> { ["a"] = zeros(7), ["t"] = t });
            using var f = SafetensorsFile.Open(path);
            using var back = f.Read("t");
            Assert.True(back.eq(t).all().item<bool>());
        }
        finally { SafetensorsFile.CopyChunkBytes = saved; }
    }

    [Fact]
    public void Reads_the_fixture_f16_file_like_the_f32_one()
    {
        using var f32 = SafetensorsFile.Open(Fixtures.PathOf("diffusion", "ella", "ella.safetensors"));
        using var f16 = SafetensorsFile.Open(Fixtures.PathOf("diffusion", "ella", "ella_f16.safetensors"));
        Assert.Equal("F16", f16.GetInfo("connector.latents").DType);
        using var a = f32.Read("connector.latents");
        using var b = f16.Read("connector.latents", ScalarType.Float32);
        Assert.True(a.allclose(b, rtol: 1e-3, atol: 1e-3));
    }

    public static IEnumerable<object[]> BadFiles() =>
    [
        ["empty", "", "", "empty"],
        ["short-length", "{}", "", "past the end"],
        ["not-json", "hello!!!", "", "not valid JSON"],
        ["not-object", "[1, 2]  ", "", "not a JSON object"],
        ["unknown-dtype", """{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}""", "x", "unknown dtype 'F8'"],
        ["size-mismatch", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", "abcd", "needs 8 bytes"],
        ["out-of-range", """{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}""", "abcd", "out of range"],
        ["overlap", """{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}""", "abcdef", "overlap"],
        ["hole", """{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}""", "abcdef", "do not cover"],
        ["trailing", """{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}""", "abcd", "do not cover"],
        ["duplicate", """{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""", "ab", "appears twice"],
        ["negative-dim", """{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}""", "a", "non-negative"],
        ["reversed-offsets", """{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}}""", "ab", "end before"],
        ["huge-shape", """{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,1]}}""", "a", "too large"],
    ];

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Bad_files_get_a_clear_error_naming_the_file(string name, string header, string data, string expected)
    {
        string path = name switch
        {
            "empty" => TempPath("empty.safetensors"),
            "short-length" => TempPath("short.safetensors"),
            _ => Raw(name + ".safetensors", header, Encoding.ASCII.GetBytes(data)),
        };
        if (name == "empty") File.WriteAllBytes(path, []);
        if (name == "short-length") File.WriteAllBytes(path, BitConverter.GetBytes(1000UL).Concat(new byte[10]).ToArray());
        var e = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Pickle_checkpoints_are_refused_with_a_conversion_hint()
    {
        string path = TempPath("model.ckpt");
        File.WriteAllBytes(path, [0x80, 0x02, 0x7d]);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Open(path));
        Assert.Contains("pickle", e.Message);
        Assert.Contains("safetensors", e.Message);
        string disguised = TempPath("model.safetensors");
        File.WriteAllBytes(disguised, "PK\x03\x04"u8.ToArray().Concat(new byte[20]).ToArray());
        Assert.Contains("pickle", Assert.Throws<CheckpointException>(() => Checkpoint.Open(disguised)).Message);
    }

    [Fact]
    public void Sharded_checkpoints_resolve_each_tensor_to_its_shard()
    {
        SafetensorsWriter.Save(TempPath("model-00001-of-00002.safetensors"), new Dictionary<string, Tensor> { ["a"] = ones(2) },
            new Dictionary<string, string> { ["format"] = "pt" });
        SafetensorsWriter.Save(TempPath("model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["b"] = full(3, 2f) });
        File.WriteAllText(TempPath("model.safetensors.index.json"),
            """{"metadata":{"total_size":20},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}""");
        using var source = Checkpoint.Open(_dir);
        Assert.IsType<ShardedSafetensors>(source);
        Assert.Equal(["a", "b"], source.Names.Order());
        using var b = source.Read("b");
        Assert.Equal(6f, b.sum().item<float>());
        Assert.Equal("pt", source.Metadata["format"]);
        Assert.Equal(CheckpointFormat.ShardedIndex, Checkpoint.Detect(_dir));

        File.WriteAllText(TempPath("model.safetensors.index.json"), """{"weight_map":{"a":"missing.safetensors"}}""");
        Assert.Contains("missing.safetensors", Assert.Throws<CheckpointException>(() => Checkpoint.Open(_dir)).Message);
    }

    [Fact]
    public void Strict_loading_reports_every_problem_at_once()
    {
        using var module = torch.nn.Linear(3, 2);
        string path = TempPath("linear.safetensors");
        SafetensorsWriter.Save(path, new Dictionary<string, Tensor> { ["weight"] = zeros(2, 4), ["extra"] = zeros(1) });
        using var source = Checkpoint.Open(path);
        var e = Assert.Throws<CheckpointException>(() => StateDictLoader.Load(module, source));
        Assert.Contains(path, e.Message);
        Assert.Contains("missing keys (bias)", e.Message);
        Assert.Contains("unexpected keys (extra)", e.Message);
        Assert.Contains("weight: checkpoint [2, 4] vs model [2, 3]", e.Message);

        SafetensorsWriter.Save(path, new Dictionary<string, Tensor> { ["weight"] = ones(2, 3).to_type(ScalarType.Float16), ["tied"] = zeros(1) });
        using var ok = Checkpoint.Open(path);
        Assert.Equal(1, StateDictLoader.Load(module, ok, ignore: ["bias", "tied"]));
        Assert.Equal(6f, module.weight!.sum().item<float>());
    }
}
