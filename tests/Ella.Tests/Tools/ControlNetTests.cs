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
    public void A_masked_padded_condition_row_gives_the_residuals_of_the_row_alone()
    {
        using var model = ControlNetModel.FromPretrained(Net);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.Contains("attn2.to_v.")) p.mul_(30); // make the random model's residuals depend on the condition
        using var _ = inference_mode();
        var g = new Generator(2);
        using var sample = randn([2, 4, 16, 16], generator: g);
        using var t = tensor(new long[] { 300, 600 });
        using var embedding = model.EmbedControl(rand([2, 3, 128, 128], generator: g), ScalarType.Float32);
        using var longRow = randn([1, 7, model.Config.CrossAttentionDim], generator: g);
        using var shortRow = randn([1, 3, model.Config.CrossAttentionDim], generator: g);
        var (joined, mask) = Ella.Pipelines.TokenPadding.Join((longRow, null), (shortRow, null));
        var masked = model.ForwardEmbedded(sample, t, joined, embedding, 1.0, mask);
        var alone = model.ForwardEmbedded(sample[1..2], t[1..2], shortRow, embedding[1..2], 1.0);
        var unmasked = model.ForwardEmbedded(sample, t, joined, embedding, 1.0);
        TensorAssert.Close(alone.Mid, masked.Mid[1..2], "mid residual of the short row");
        for (int i = 0; i < alone.Down.Count; i++) TensorAssert.Close(alone.Down[i], masked.Down[i][1..2], $"down residual {i}");
        Assert.True((unmasked.Mid[1..2] - alone.Mid).abs().max().item<float>() > 1e-4, "without the mask the padding should change the residuals");
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
