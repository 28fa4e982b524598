using System.Text.Json;
using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Modules;

public class EllaConnectorTests
{
    static string Dir => Fixtures.PathOf("diffusion", "ella");

    public static IEnumerable<object[]> Cases()
    {
        using var doc = Fixtures.Json("diffusion", "ella", "cases.json");
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            yield return [c.GetProperty("name").GetString()!];
    }

    static JsonElement Case(string name)
    {
        using var doc = Fixtures.Json("diffusion", "ella", "cases.json");
        return doc.RootElement.GetProperty("cases").EnumerateArray().First(c => c.GetProperty("name").GetString() == name).Clone();
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Matches_reference_output(string caseName)
    {
        var c = Case(caseName);
        string weights = Path.Combine(Dir, c.GetProperty("weights").GetString()!);
        using var model = EllaConnector.FromPretrained(weights);
        var data = Fixtures.Load(Path.Combine(Dir, c.GetProperty("file").GetString()!));
        using var _ = inference_mode();
        using var output = model.forward(data["text_features"], data["timesteps"]);
        TensorAssert.Close(data["out"], output, caseName);
    }

    [Fact]
    public void Config_is_resolved_from_shapes_and_side_json()
    {
        using var source = Checkpoint.Open(Path.Combine(Dir, "ella.safetensors"));
        var inferred = EllaConnectorConfig.InferFromTensors(source);
        var cfg = EllaConnectorConfig.Resolve(Path.Combine(Dir, "ella.safetensors"), source);
        using var doc = Fixtures.Json("diffusion", "ella", "cases.json");
        var kw = doc.RootElement.GetProperty("constructor_kwargs");
        Assert.Equal(kw.GetProperty("width").GetInt32(), inferred.Width);
        Assert.Equal(kw.GetProperty("layers").GetInt32(), inferred.Layers);
        Assert.Equal(kw.GetProperty("num_latents").GetInt32(), inferred.NumLatents);
        Assert.Equal(kw.GetProperty("input_dim").GetInt32(), inferred.InputDim);
        Assert.Equal(kw.GetProperty("time_channel").GetInt32(), inferred.TimeChannel);
        Assert.Equal(kw.GetProperty("time_embed_dim").GetInt32(), inferred.TimeEmbedDim);
        Assert.Equal(8, inferred.Heads); // not visible in the weights: the released default
        Assert.Equal(kw.GetProperty("heads").GetInt32(), cfg.Heads); // from ella_config.json beside the file
    }

    [Fact]
    public void Intermediates_match_for_the_first_case()
    {
        // The timestep features and embedding are the first things that can go wrong; check them on their own.
        var inter = Fixtures.Load(Path.Combine(Dir, "intermediates_b2_t999_37.safetensors"));
        var data = Fixtures.Load(Path.Combine(Dir, "case_b2_t999_37.safetensors"));
        var cfg = JsonSerializer.Deserialize<EllaConnectorConfig>(File.ReadAllText(Path.Combine(Dir, "ella_config.json")))!;
        using var position = new Ella.Modules.Common.Timesteps(cfg.TimeChannel, true, 0);
        using var _ = inference_mode();
        TensorAssert.Close(inter["position"], position.forward(data["timesteps"]), "position");
    }

    [Fact]
    public void Default_config_reproduces_the_release_manifest()
    {
        using var doc = Fixtures.Json("diffusion", "ella", "manifest-ella-sd15.json");
        var expected = doc.RootElement.GetProperty("tensors").EnumerateArray()
            .Select(t => (t.GetProperty("key").GetString()!, t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray()))
            .ToList();
        using var model = new EllaConnector(new EllaConnectorConfig());
        var actual = model.state_dict().Select(kv => (kv.Key, kv.Value.shape)).ToList();
        Assert.Equal(expected.Select(e => e.Item1), actual.Select(a => a.Key));
        for (int i = 0; i < expected.Count; i++) Assert.Equal(expected[i].Item2, actual[i].shape);
        long parameters = model.parameters().Sum(p => p.NumberOfElements);
        Assert.Equal(doc.RootElement.GetProperty("total_parameters").GetInt64(), parameters);
    }

    [Fact]
    public void Save_then_load_keeps_weights_and_config_in_metadata()
    {
        string tmp = Path.Combine(Path.GetTempPath(), $"ella-roundtrip-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            var cfg = new EllaConnectorConfig { TimeChannel = 8, TimeEmbedDim = 16, Width = 16, Layers = 1, Heads = 2, NumLatents = 4, InputDim = 12 };
            using var model = new EllaConnector(cfg);
            string path = Path.Combine(tmp, "trained.safetensors");
            model.Save(path);
            using var loaded = EllaConnector.FromPretrained(path);
            Assert.Equal(2, loaded.Config.Heads); // heads came from metadata, not the default 8
            using var x = randn(1, 5, 12);
            using var t = tensor(new long[] { 10 });
            using var _ = inference_mode();
            TensorAssert.Close(model.forward(x, t), loaded.forward(x, t), "round trip", 0);
        }
        finally { Directory.Delete(tmp, true); }
    }

    [Fact]
    public void Repeated_forward_passes_do_not_leak_tensors()
    {
        using var model = EllaConnector.FromPretrained(Path.Combine(Dir, "ella.safetensors"));
        using var x = randn(2, 13, 40);
        using var _ = inference_mode();
        long Live() => DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        void Step(int i)
        {
            using var scope = NewDisposeScope();
            using var t = tensor(new long[] { 999 - i });
            model.forward(x, t);
        }
        Step(0); // warm-up
        DisposeScopeManager.Statistics.Reset();
        long before = Live();
        for (int i = 1; i <= 20; i++) Step(i);
        Assert.Equal(before, Live());
    }
}
