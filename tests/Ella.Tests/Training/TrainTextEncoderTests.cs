using System.Text.Json;
using Ella.Modules.Ella;
using Ella.Tests.Infrastructure;
using Ella.Tests.Training.Data;

namespace Ella.Tests.Training;

/// <summary>
/// `ella train cache` and `ella train` with `--text-encoder minilm` (packaged, no path) on a tiny random SD folder (the
/// tiny shapes-world stand-in): the cache records the encoder, every saved connector carries it in its metadata, a cache
/// made with another encoder is refused naming both, and without model flags the world is the model.
/// </summary>
public sealed class TrainTextEncoderTests : IDisposable
{
    readonly TinyWorldFolder _world = new();
    readonly string _dir = Directory.CreateTempSubdirectory("ella-train-te-").FullName;

    public void Dispose()
    {
        _world.Dispose();
        Directory.Delete(_dir, true);
    }

    string Data() => TinyTrainingFiles.Captions(_dir, ("c.png", TestImages.Png(24, 24), "two blue circles above a green triangle"));

    string Cache(string kind)
    {
        string cache = Path.Combine(_dir, "cache-" + kind);
        var r = CliRunner.Run("train", "cache", "--sd", _world.Folder, "--text-encoder", kind, "--data", Data(), "--output", cache, "--resolution", "32");
        Assert.True(r.ExitCode == 0, r.Error);
        return cache;
    }

    static string RecordedEncoder(string cache)
    {
        using var index = JsonDocument.Parse(File.ReadAllText(Directory.GetFiles(cache, "index-*.json").Single()));
        return index.RootElement.GetProperty("settings").GetProperty("text_encoder").GetString()!;
    }

    string[] Train(string cache, string output, int steps, params string[] extra) =>
        ["train", "--sd", _world.Folder, "--cache", cache, "--output", output, "--max-steps", steps.ToString(), "--batch", "2", "--resolution", "32",
         "--seed", "3", "--blocks", "1", "--save-every", "1", "--keep-last", "5", .. extra];

    [Fact]
    public void Minilm_cache_and_two_steps_write_the_encoder_into_every_connector()
    {
        string cache = Cache("minilm");
        Assert.Equal("minilm", RecordedEncoder(cache));
        string prompts = Path.Combine(_dir, "prompts.txt");
        File.WriteAllLines(prompts, ["a red square", "a gradient"]);
        string output = Path.Combine(_dir, "run");
        var r = CliRunner.Run(Train(cache, output, 2, "--text-encoder", "minilm", "--validation-prompts", prompts, "--validation-steps", "1"));
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("step 2/2", r.Error);
        Assert.True(File.Exists(Path.Combine(output, "validation", "step-000002.png")));
        var connectors = new[] { Path.Combine(output, "connector.safetensors"), Path.Combine(output, "checkpoint-1", "connector.safetensors"), Path.Combine(output, "checkpoint-2", "connector.safetensors") };
        foreach (var file in connectors)
        {
            Assert.Equal("minilm", ConnectorMetadata.TextEncoder(file));
            using var c = Connectors.FromPretrained(file);
            Assert.Equal(384, c.Config.InputDim); // fitted to MiniLM
            Assert.Equal(TinyWorldFolder.CrossAttentionDim, c.Config.Width);
        }
    }

    [Fact]
    public void A_cache_made_with_another_encoder_is_refused_naming_both()
    {
        string cache = Cache("minilm");
        foreach (var other in new[] { "arctic-xs", "t5" })
        {
            string output = Path.Combine(_dir, "bad-" + other);
            var r = CliRunner.Run(Train(cache, output, 1, "--text-encoder", other));
            Assert.True(r.ExitCode == 2, $"{other}: {r.ExitCode} {r.Error}");
            Assert.Contains("minilm", r.Error);
            Assert.Contains(other, r.Error);
            Assert.DoesNotContain("step 1/", r.Error);
            Assert.False(File.Exists(Path.Combine(output, "log.jsonl")));
        }
    }

    [Fact]
    public void Without_model_flags_training_uses_the_world_and_the_caches_encoder()
    {
        string cache = Cache("minilm");
        using var env = _world.AsDefault();
        string output = Path.Combine(_dir, "world-run");
        var r = CliRunner.Run("train", "--cache", cache, "--output", output, "--max-steps", "1", "--resolution", "32", "--blocks", "1");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("shapes-world", r.Error);
        Assert.Equal("minilm", ConnectorMetadata.TextEncoder(Path.Combine(output, "connector.safetensors")));
    }

    [Fact]
    public void An_arctic_xs_cache_is_recorded_as_arctic_xs_and_differs_from_minilm()
    {
        var a = new Ella.Training.Data.FeatureCacheSettings { TextEncoder = "arctic-xs", Vae = "v" };
        var m = a with { TextEncoder = "minilm" };
        Assert.Contains("text_encoder", a.Difference(m));
        // Caches made before the kind was recorded hold the FLAN-T5 path: they are t5 caches, whatever the path.
        var old1 = a with { TextEncoder = "/models/flan-t5-xl" };
        var old2 = a with { TextEncoder = "google/flan-t5-xl" };
        Assert.Null(old1.Difference(old2));
        Assert.Equal(Ella.TextEncoders.TextEncoderKind.T5, Ella.TextEncoders.TextEncoderKinds.FromRecordedName("/models/flan-t5-xl"));
        Assert.Equal(Ella.TextEncoders.TextEncoderKind.ArcticXs, Ella.TextEncoders.TextEncoderKinds.FromRecordedName("arctic-xs"));
    }
}
