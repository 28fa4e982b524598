using System.Text.Json;
using Ella.Configs;
using Ella.Modules.Vae;
using Ella.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Ella.Tests.Modules;

public class VaeTests
{
    static string Dir => Fixtures.PathOf("diffusion", "vae");

    static readonly Lazy<AutoencoderKL> Model = new(() =>
    {
        using var doc = Fixtures.Json("diffusion", "vae", "cases.json");
        return AutoencoderKL.FromPretrained(Path.Combine(Dir, doc.RootElement.GetProperty("model_dir").GetString()!));
    });

    public static IEnumerable<object[]> Cases()
    {
        using var doc = Fixtures.Json("diffusion", "vae", "cases.json");
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            yield return [c.GetProperty("kind").GetString()!, c.GetProperty("name").GetString()!, c.GetProperty("file").GetString()!];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_diffusers(string kind, string name, string file)
    {
        var data = Fixtures.Load(Path.Combine(Dir, file));
        using var _ = inference_mode();
        if (kind == "decode")
        {
            using var sample = Model.Value.Decode(data["latents"]);
            TensorAssert.Close(data["sample"], sample, $"decode {name}");
            return;
        }
        Assert.Equal("encode", kind);
        using var moments = Model.Value.EncodeMoments(data["image"]);
        TensorAssert.Close(data["moments"], moments, $"encode {name} moments");
        using var dist = Model.Value.Encode(data["image"]);
        TensorAssert.Close(data["mean"], dist.Mean, $"encode {name} mean");
        TensorAssert.Close(data["logvar"], dist.LogVar, $"encode {name} logvar");
        TensorAssert.Close(data["std"], dist.Std(), $"encode {name} std");
        TensorAssert.Close(data["var"], dist.Var(), $"encode {name} var");
    }

    [Fact]
    public void Full_size_sd15_reproduces_the_manifest()
    {
        using var doc = Fixtures.Json("diffusion", "manifests", "sd15-vae-diffusers.json");
        var config = JsonSerializer.Deserialize<AutoencoderKLConfig>(doc.RootElement.GetProperty("config").GetRawText())!;
        var model = MetaDevice.Build(() => new AutoencoderKL(config));
        var expected = MetaDevice.Manifest(doc.RootElement.GetProperty("tensors").EnumerateArray());
        var actual = model.state_dict().Select(kv => (kv.Key, kv.Value.shape)).ToList();
        Assert.Equal(expected.Select(e => e.Key), actual.Select(a => a.Key));
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i].Shape, actual[i].shape);
        Assert.Equal(doc.RootElement.GetProperty("total_parameters").GetInt64(), model.parameters().Sum(p => p.NumberOfElements));
    }
}
