using System.Text.Json;
using Ella.Configs;
using Ella.Imaging;
using Ella.Modules.ControlNet;
using Ella.Pipelines.ControlNet;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Tests.Tools;

/// <summary>ControlNet loading (folder, single file, config from shapes) and several ControlNets at once.</summary>
public class ControlNetTests
{
    static string Net => Path.Combine(ToolsFixtureTests.Dir, "controlnet");

    [Fact]
    public void Config_read_from_the_shapes_matches_the_folder_config()
    {
        var folder = ControlNetConfig.Load(Path.Combine(Net, "config.json"));
        using var source = Checkpoint.Open(Net);
        var shapes = ControlNetConfig.FromShapes(source);
        Assert.Equal(folder.BlockOutChannels, shapes.BlockOutChannels);
        Assert.Equal(folder.ConditioningEmbeddingOutChannels, shapes.ConditioningEmbeddingOutChannels);
        Assert.Equal(folder.CrossAttentionDim, shapes.CrossAttentionDim);
        Assert.Equal(folder.InChannels, shapes.InChannels);
        Assert.Equal(folder.ConditioningChannels, shapes.ConditioningChannels);
        Assert.Equal(folder.DownBlockTypes, shapes.DownBlockTypes);
        // A single file loads too (config.json beside it).
        using var model = ControlNetModel.FromPretrained(Path.Combine(Net, "diffusion_pytorch_model.safetensors"));
        Assert.Equal(folder.BlockOutChannels, model.Config.BlockOutChannels);
    }

    [Fact]
    public void Two_controlnets_at_half_scale_sum_to_one_at_full_scale()
    {
        using var doc = Fixtures.Json("tools", "cases.json");
        var c = doc.RootElement.GetProperty("cases").EnumerateArray().First(e => e.GetProperty("kind").GetString() == "controlnet");
        var expected = Fixtures.Load(Path.Combine(ToolsFixtureTests.Dir, c.GetProperty("file").GetString()!))["image"];
        var request = ToolsFixtureTests.Request(c);
        var unit = request.ControlNets[0];
        var half = unit with { Scale = unit.Scale / 2 };
        var pipeline = ToolsFixtureTests.Pipeline("unet");
        lock (ToolsFixtureTests.Pipelines)
        {
            using var result = pipeline.Generate(request with { ControlNets = [half, half] });
            double diff = (result.Images - expected).abs().max().item<float>();
            Assert.True(diff <= 2e-3, $"two half-scale ControlNets differ from the reference by {diff}");
        }
    }
}
