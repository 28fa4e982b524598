using Ella.Configs;
using Ella.Modules.Clip;
using Ella.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Ella.Tests.Modules;

public class ClipTextModelTests
{
    static string Dir => Fixtures.PathOf("text", "clip-text");
    static readonly Lazy<ClipTextModel> Model = new(() => ClipTextModel.FromPretrained(Dir));

    public static IEnumerable<object[]> Cases()
    {
        using var doc = Fixtures.Json("text", "clip-text", "io.json");
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateObject()) yield return [c.Name];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_transformers(string caseName)
    {
        var io = Fixtures.Load(Path.Combine(Dir, "io.safetensors"));
        using var _ = inference_mode();
        using var output = Model.Value.Encode(io[$"{caseName}.input_ids"], io.GetValueOrDefault($"{caseName}.attention_mask"), outputHiddenStates: true);
        TensorAssert.Close(io[$"{caseName}.last_hidden_state"], output.LastHiddenState, $"{caseName} last_hidden_state");
        TensorAssert.Close(io[$"{caseName}.pooler_output"], output.PoolerOutput, $"{caseName} pooler_output");
        for (int i = 0; io.ContainsKey($"{caseName}.hidden_states.{i}"); i++)
            TensorAssert.Close(io[$"{caseName}.hidden_states.{i}"], output.HiddenStates![i], $"{caseName} hidden_states.{i}");
    }

    [Fact]
    public void Full_size_clip_l_reproduces_the_manifest()
    {
        using var doc = Fixtures.Json("text", "manifests", "clip-vit-l-14-text.json");
        var root = doc.RootElement;
        var config = System.Text.Json.JsonSerializer.Deserialize<ClipTextConfig>(root.GetProperty("config").GetRawText())!;
        var model = MetaDevice.Build(() => new ClipTextModel(config));
        var expected = MetaDevice.Manifest(root.GetProperty("keys").EnumerateArray())
            .Where(e => !ClipTextModel.OptionalKeys.Contains(e.Key)).ToList();
        var actual = model.state_dict().Select(kv => (kv.Key, kv.Value.shape)).ToList();
        Assert.Equal(expected.Select(e => e.Key), actual.Select(a => a.Key));
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i].Shape, actual[i].shape);
        Assert.Equal(root.GetProperty("total_parameters_unique").GetInt64(), model.parameters().Sum(p => p.NumberOfElements));
    }
}
