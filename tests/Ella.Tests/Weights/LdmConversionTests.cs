using System.Text.Json;
using Ella.Configs;
using Ella.Modules.UNet;
using Ella.Modules.Vae;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Weights;

/// <summary>A source that knows names and shapes only (from a manifest); reading is not expected.</summary>
sealed class ManifestSource(string path, IEnumerable<(string Key, long[] Shape)> entries) : ITensorSource
{
    readonly Dictionary<string, long[]> _shapes = entries.ToDictionary(e => e.Key, e => e.Shape);
    public string Path => path;
    public IReadOnlyList<string> Names => _shapes.Keys.ToList();
    public bool Contains(string name) => _shapes.ContainsKey(name);
    public TensorInfo GetInfo(string name) => new(name, "F32", _shapes[name], _shapes[name].Aggregate(4L, (a, b) => a * b));
    public Tensor Read(string name, ScalarType? dtype = null) => throw new InvalidOperationException("manifest only");
    public IReadOnlyDictionary<string, string> Metadata => new Dictionary<string, string>();
    public void Dispose() { }
}

public sealed class LdmConversionTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-ldm-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    static List<(string Key, long[] Shape)> Manifest(string file)
    {
        using var doc = Fixtures.Json("diffusion", "manifests", file);
        return MetaDevice.Manifest(doc.RootElement.GetProperty("tensors").EnumerateArray());
    }

    static ManifestSource LdmManifestSource() =>
        new("sd15-ldm-manifest", Manifest("sd15-unet-ldm.json").Concat(Manifest("sd15-vae-ldm.json")));

    [Theory]
    [InlineData("unet")]
    [InlineData("vae")]
    public void Every_ldm_key_maps_to_the_diffusers_key(string part)
    {
        using var doc = Fixtures.Json("diffusion", "manifests", "ldm-to-diffusers.json");
        using var source = LdmManifestSource();
        ITensorSource view = part == "unet" ? LdmCheckpointConverter.UNet(source).View : LdmCheckpointConverter.Vae(source).View;
        var entries = doc.RootElement.GetProperty(part).EnumerateArray().ToList();
        Assert.Equal(entries.Count, view.Names.Count);
        foreach (var e in entries)
        {
            string diffusers = e.GetProperty("diffusers").GetString()!;
            Assert.True(view.Contains(diffusers), $"missing {diffusers}");
            var info = view.GetInfo(diffusers);
            Assert.Equal(e.GetProperty("diffusers_shape").EnumerateArray().Select(d => d.GetInt64()), info.Shape);
        }
    }

    [Fact]
    public void Derived_configs_equal_the_diffusers_configs()
    {
        using var source = LdmManifestSource();
        var (unet, _) = LdmCheckpointConverter.UNet(source);
        using var udoc = Fixtures.Json("diffusion", "manifests", "sd15-unet-diffusers.json");
        var expected = JsonSerializer.Deserialize<UNet2DConditionConfig>(udoc.RootElement.GetProperty("config").GetRawText())!;
        Assert.Equal(expected.BlockOutChannels, unet.BlockOutChannels);
        Assert.Equal(expected.LayersPerBlock, unet.LayersPerBlock);
        Assert.Equal(expected.CrossAttentionDim, unet.CrossAttentionDim);
        Assert.Equal(expected.HeadsPerBlock(), unet.HeadsPerBlock());
        Assert.Equal(expected.DownBlockTypes, unet.DownBlockTypes);
        Assert.Equal(expected.UpBlockTypes, unet.UpBlockTypes);
        Assert.False(unet.UseLinearProjection);
        var (vae, _) = LdmCheckpointConverter.Vae(source);
        Assert.Equal([128, 256, 512, 512], vae.BlockOutChannels);
        Assert.Equal(4, vae.LatentChannels);
    }

    [Fact]
    public void A_full_size_random_ldm_checkpoint_loads_strictly()
    {
        // Written in F16 zeros to keep the file small; the loader converts to the model dtype.
        string path = Path.Combine(_dir, "sd15-random.safetensors");
        var specs = Manifest("sd15-unet-ldm.json").Concat(Manifest("sd15-vae-ldm.json"))
            .Select(e => new SafetensorsWriter.TensorSpec(e.Key, ScalarType.Float16, e.Shape))
            .Append(new SafetensorsWriter.TensorSpec("alphas_cumprod", ScalarType.Float32, [1000]))
            .ToList();
        SafetensorsWriter.SaveStreaming(path, specs, s => zeros(s.Shape, dtype: s.DType));
        using var source = Checkpoint.Open(path);
        Assert.Equal(CheckpointFormat.SingleFileStableDiffusion, Checkpoint.Detect(path));
        var (ucfg, uview) = LdmCheckpointConverter.UNet(source);
        using (var unet = UNet2DConditionModel.FromSource(ucfg, uview))
            Assert.Equal(859_520_964, unet.parameters().Sum(p => p.NumberOfElements));
        var (vcfg, vview) = LdmCheckpointConverter.Vae(source);
        using (var vae = AutoencoderKL.FromSource(vcfg, vview))
            Assert.Equal(83_653_863, vae.parameters().Sum(p => p.NumberOfElements));
    }

    [Fact]
    public void Legacy_vae_attention_names_are_renamed()
    {
        using var doc = Fixtures.Json("diffusion", "manifests", "sd15-vae-diffusers.json");
        var entries = doc.RootElement.GetProperty("tensors").EnumerateArray()
            .Select(t => (t.TryGetProperty("legacy_key", out var l) ? l.GetString()! : t.GetProperty("key").GetString()!,
                t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray())).ToList();
        using var source = new ManifestSource("legacy-vae", entries);
        using var view = AutoencoderKL.DiffusersView(source);
        foreach (var t in doc.RootElement.GetProperty("tensors").EnumerateArray())
            Assert.True(view.Contains(t.GetProperty("key").GetString()!), t.GetProperty("key").GetString());
    }
}
