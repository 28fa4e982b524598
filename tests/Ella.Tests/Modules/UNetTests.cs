using System.Text.Json;
using Ella.Configs;
using Ella.Modules.UNet;
using Ella.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Ella.Tests.Modules;

public class UNetTests
{
    static string Dir => Fixtures.PathOf("diffusion", "unet");

    static readonly Lazy<UNet2DConditionModel> Model = new(() =>
    {
        using var doc = Fixtures.Json("diffusion", "unet", "cases.json");
        return UNet2DConditionModel.FromPretrained(Path.Combine(Dir, doc.RootElement.GetProperty("model_dir").GetString()!));
    });

    public static IEnumerable<object[]> Cases()
    {
        using var doc = Fixtures.Json("diffusion", "unet", "cases.json");
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            yield return [c.GetProperty("name").GetString()!, c.GetProperty("file").GetString()!];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_diffusers(string name, string file)
    {
        var data = Fixtures.Load(Path.Combine(Dir, file));
        using var _ = inference_mode();
        using var output = Model.Value.forward(data["sample"], data["timestep"], data["encoder_hidden_states"]);
        TensorAssert.Close(data["out"], output, name);
    }

    [Fact]
    public void Parameter_count_matches_the_fixture()
    {
        using var doc = Fixtures.Json("diffusion", "unet", "cases.json");
        Assert.Equal(doc.RootElement.GetProperty("num_parameters").GetInt64(), Model.Value.parameters().Sum(p => p.NumberOfElements));
    }

    [Fact]
    public void Full_size_sd15_reproduces_the_manifest()
    {
        using var doc = Fixtures.Json("diffusion", "manifests", "sd15-unet-diffusers.json");
        var config = JsonSerializer.Deserialize<UNet2DConditionConfig>(doc.RootElement.GetProperty("config").GetRawText())!;
        var model = MetaDevice.Build(() => new UNet2DConditionModel(config));
        var expected = MetaDevice.Manifest(doc.RootElement.GetProperty("tensors").EnumerateArray());
        var actual = model.state_dict().Select(kv => (kv.Key, kv.Value.shape)).ToList();
        Assert.Equal(expected.Select(e => e.Key), actual.Select(a => a.Key));
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i].Shape, actual[i].shape);
        Assert.Equal(doc.RootElement.GetProperty("total_parameters").GetInt64(), model.parameters().Sum(p => p.NumberOfElements));
    }

    [Fact]
    public void Unsupported_config_options_are_named()
    {
        var cfg = UNet2DConditionConfig.StableDiffusion15();
        cfg.AdditionEmbedType = "text_time";
        Assert.Contains("addition_embed_type", Assert.Throws<EllaException>(() => cfg.Validate("unet/config.json")).Message);
    }
}
