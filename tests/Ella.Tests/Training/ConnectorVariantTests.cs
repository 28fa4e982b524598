using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Training;

/// <summary>The paper's Tab. 6 connector designs: exact sizes, the authors' init, save/load, and use by the pipeline.</summary>
public sealed class ConnectorVariantTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"ella-variants-{Guid.NewGuid():N}");
    public ConnectorVariantTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, true);

    static string PipelineModel => Fixtures.PathOf("diffusion", "pipeline", "model");

    /// <summary>The table: input 2048 (T5-XL, TinyLlama), width 768.</summary>
    [Theory]
    [InlineData("mlp", 6, 2_164_224L)]
    [InlineData("resampler", 1, 8_712_192L)]
    [InlineData("resampler", 6, 44_159_232L)]
    [InlineData("adaln-zero", 6, 73_907_712L)]
    [InlineData("tsc", 6, 66_820_608L)]
    public void Parameter_counts_match_the_paper(string type, int blocks, long expected)
    {
        var config = new EllaConnectorConfig { ConnectorType = type, InputDim = 2048, Width = 768, Layers = blocks, Heads = 8, NumLatents = 64, TimeChannel = 320, TimeEmbedDim = 768 };
        using var model = MetaDevice.Build(() => Connectors.Create(config));
        Assert.Equal(expected, model.parameters().Sum(p => p.NumberOfElements));
    }

    static EllaConnectorConfig Tiny(string type) => new()
    {
        ConnectorType = type, InputDim = 40, Width = 64, Layers = 2, Heads = 4, NumLatents = 8, TimeChannel = 32, TimeEmbedDim = 64,
    };

    [Theory]
    [InlineData("tsc")]
    [InlineData("mlp")]
    [InlineData("resampler")]
    [InlineData("adaln-zero")]
    public void Init_cli_writes_a_connector_that_loads_with_its_config_and_type(string type)
    {
        string path = Path.Combine(_dir, $"{type}.safetensors");
        var r = CliRunner.Run("connector", "init", "--type", type, "--input-dim", "40", "--width", "64", "--blocks", "2", "--heads", "4",
            "--latents", "8", "--time-channel", "32", "--time-embed-dim", "64", "-o", path);
        Assert.True(r.ExitCode == 0, r.Error);
        using var loaded = Connectors.FromPretrained(path);
        Assert.Equal(type, loaded.Config.ConnectorType);
        Assert.Equal(4, loaded.Config.Heads);
        Assert.Equal(type is "tsc" or "adaln-zero", loaded.TimestepAware);
        using var fresh = Connectors.Create(Tiny(type));
        Assert.Equal(fresh.state_dict().Keys.OrderBy(k => k), loaded.state_dict().Keys.OrderBy(k => k));
        using var x = randn(2, 5, 40);
        using var t = tensor(new long[] { 10, 900 });
        using var _ = inference_mode();
        using var y = loaded.forward(x, t);
        Assert.Equal(type == "mlp" ? new long[] { 2, 5, 64 } : [2, 8, 64], y.shape);
        // Also without the metadata: the type is recognised from the tensor names.
        using (var source = Ella.Weights.Checkpoint.Open(path))
            Assert.Equal(type, EllaConnectorConfig.InferFromTensors(source).ConnectorType);
    }

    [Fact]
    public void Initialisation_follows_the_authors()
    {
        manual_seed(1);
        using var adaln = Connectors.Create(Tiny("adaln-zero"));
        var sd = adaln.state_dict();
        foreach (var (k, v) in sd.Where(kv => kv.Key.Contains(".ln_") || kv.Key.Contains(".gate.")))
            Assert.True(v.abs().max().item<float>() == 0, $"{k} is not zero");
        Assert.True(sd.Keys.Count(k => k.Contains(".gate.")) == 4);
        foreach (var type in new[] { "tsc", "resampler" })
        {
            var wide = Tiny(type);
            wide.Width = 256;
            wide.NumLatents = 256;
            using var m = Connectors.Create(wide);
            var latents = m.state_dict().First(kv => kv.Key.EndsWith("latents")).Value;
            double std = latents.std().item<float>();
            Assert.InRange(std, 0.9 / 16, 1.1 / 16); // randn · width^-0.5
        }
        // At init an AdaLN-Zero connector passes the latents (+ time_aware_linear) through its closed blocks.
        using var _ = inference_mode();
        using var x = randn(1, 3, 40);
        using var out1 = adaln.forward(x, tensor(new long[] { 5 }));
        using var out2 = adaln.forward(randn(1, 7, 40), tensor(new long[] { 5 }));
        TensorAssert.Close(out1, out2, "AdaLN-Zero output at init does not depend on the text", 0);
    }

    [Fact]
    public void Pipeline_computes_a_timestep_free_connector_once_per_prompt()
    {
        using var connector = Connectors.Create(Tiny("mlp"));
        using var _ = inference_mode();
        using var features = randn(1, 5, 40);
        using var conditioner = new EllaConditioner(connector, [features], ScalarType.Float32);
        using var t1 = tensor(10L);
        using var first = conditioner.At(new StepTime(10, t1));
        foreach (var p in connector.parameters()) p.add_(1.0); // a second computation would now differ
        using var t2 = tensor(500L);
        using var second = conditioner.At(new StepTime(500, t2));
        TensorAssert.Close(first, second, "cached condition", 0);
    }

    [Fact]
    public void Generate_loads_every_variant()
    {
        foreach (var type in Connectors.Types)
        {
            string path = Path.Combine(_dir, $"gen-{type}.safetensors");
            Ella.Cli.Commands.Connector.ConnectorInitCommand.Write(Tiny(type), path, 3);
            var r = CliRunner.Run("generate", "--sd", PipelineModel, "--ella", path, "--prompt-embeds",
                Fixtures.PathOf("diffusion", "pipeline", "run_flex_g7.5.safetensors"), "--steps", "2", "--width", "64", "--height", "64",
                "--seed", "1", "-o", Path.Combine(_dir, $"{type}.png"));
            Assert.True(r.ExitCode == 0, $"{type}: {r.Error}");
            Assert.True(File.Exists(Path.Combine(_dir, $"{type}.png")));
        }
    }
}
