using System.Text.Json;
using Ella.Configs;
using Ella.Modules.T5;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Tests.Modules;

public class T5EncoderTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static string Dir => Fixtures.PathOf("text", "t5");

    public static IEnumerable<object[]> Cases()
    {
        using var doc = Fixtures.Json("text", "t5", "io.json");
        var weightFiles = Directory.GetFiles(Dir, "model*.safetensors").Select(Path.GetFileName).Order().ToList();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateObject())
            foreach (var w in weightFiles)
                yield return [c.Name, w!];
    }

    static readonly Dictionary<string, T5EncoderModel> Models = new();

    static T5EncoderModel Model(string weights)
    {
        lock (Models)
        {
            if (Models.TryGetValue(weights, out var m)) return m;
            m = new T5EncoderModel(T5Config.Load(Dir));
            using (var source = Checkpoint.Open(Path.Combine(Dir, weights)))
            using (var view = T5EncoderModel.EncoderView(source))
                StateDictLoader.Load(m, view);
            m.eval();
            return Models[weights] = m;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_transformers(string caseName, string weights)
    {
        var io = Fixtures.Load(Path.Combine(Dir, "io.safetensors"));
        var model = Model(weights);
        using var _ = inference_mode();
        var mask = io.GetValueOrDefault($"{caseName}.attention_mask");
        using var output = model.Encode(io[$"{caseName}.input_ids"], mask, outputHiddenStates: true);
        TensorAssert.Close(io[$"{caseName}.last_hidden_state"], output.LastHiddenState, $"{caseName} last_hidden_state ({weights})");
        for (int i = 0; io.ContainsKey($"{caseName}.hidden_states.{i}"); i++)
            TensorAssert.Close(io[$"{caseName}.hidden_states.{i}"], output.HiddenStates![i], $"{caseName} hidden_states.{i}");
        if (io.TryGetValue($"{caseName}.relative_position_bucket", out var buckets))
        {
            using var ours = T5Attention.RelativePositionBucket(buckets.shape[0], buckets.shape[1], model.Config.RelativeAttentionNumBuckets, model.Config.RelativeAttentionMaxDistance, CPU);
            Assert.True(ours.eq(buckets).all().item<bool>(), "relative position buckets differ");
        }
    }

    [Fact]
    public void Bf16_runs_and_stays_near_fp32()
    {
        var io = Fixtures.Load(Path.Combine(Dir, "io.safetensors"));
        using var model = T5EncoderModel.FromPretrained(Dir, ScalarType.BFloat16);
        using var _ = inference_mode();
        const string c = "a_batch2_padded128";
        using var result = model.forward(io[$"{c}.input_ids"], io[$"{c}.attention_mask"]);
        Assert.Equal(ScalarType.BFloat16, result.dtype);
        double dev = (result.to_type(ScalarType.Float32) - io[$"{c}.last_hidden_state"]).abs().max().item<float>();
        double reference = (io[$"{c}.last_hidden_state_bf16"].to_type(ScalarType.Float32) - io[$"{c}.last_hidden_state"]).abs().max().item<float>();
        // Report the deviation; bf16 keeps 8 bits of mantissa, so allow a few ulps at |x| ≈ 4 beyond PyTorch's own bf16 run.
        output.WriteLine($"T5 bf16 vs fp32 max |diff| = {dev:F4} (PyTorch CPU bf16: {reference:F4})");
        Assert.True(dev < 4 * reference, $"bf16 deviation {dev} is far above PyTorch's {reference}");
    }

    [Fact]
    public void Full_size_flan_t5_xl_reproduces_the_manifest()
    {
        using var doc = Fixtures.Json("text", "manifests", "flan-t5-xl-encoder.json");
        var root = doc.RootElement;
        var config = JsonSerializer.Deserialize<T5Config>(root.GetProperty("config").GetRawText())!;
        var model = MetaDevice.Build(() => new T5EncoderModel(config));
        var expected = MetaDevice.Manifest(root.GetProperty("keys").EnumerateArray());
        var actual = model.state_dict().Select(kv => (kv.Key, kv.Value.shape)).ToList();
        Assert.Equal(expected.Select(e => e.Key), actual.Select(a => a.Key));
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i].Shape, actual[i].shape);
        long unique = model.parameters().Distinct().Sum(p => p.NumberOfElements);
        Assert.Equal(root.GetProperty("total_parameters_unique").GetInt64(), unique);
    }
}
