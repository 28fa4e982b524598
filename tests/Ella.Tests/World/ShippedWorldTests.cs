using Ella.Evaluation.Judges;
using Ella.Imaging;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using Ella.World.Perception;
using Ella.World.Questions;
using Ella.World.Scenes;
using Ella.World.Training;
using Xunit.Abstractions;

namespace Ella.Tests.World;

/// <summary>The model that ships in models/shapes-world, run the way README's first command runs it.</summary>
public sealed class ShippedWorldTests(ITestOutputHelper output) : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"ella-shipped-{Guid.NewGuid():N}");
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    [Fact(Skip = "open (issue 10): the shipped shapes-world model does not draw this scene yet (see README, The shapes world: 0 of 16 seeds pass in any mode)")]
    public void The_readme_command_draws_its_scene_and_the_judge_says_so()
    {
        Directory.CreateDirectory(_dir);
        string png = Path.Combine(_dir, "out.png");
        const string prompt = "a large red circle to the left of a small blue square on a white background";
        // As README's first command: no model flags (the shipped world), seed 1; fp32 so every CPU draws the same picture.
        var r = CliRunner.Run("generate", "--prompt", prompt, "--seed", "1", "--dtype", "fp32", "--upscale", "4", "-o", png);
        Assert.True(r.ExitCode == 0, r.Error);
        var image = RgbImage.Load(png);
        Assert.Equal(256, image.Width);
        var seen = SceneParser.Parse(Downscale(image, 4));
        var circle = new Descriptor(ObjectSize.Large, ObjectColor.Red, Shape.Circle);
        var square = new Descriptor(ObjectSize.Small, ObjectColor.Blue, Shape.Square);
        WorldTuple[] questions =
        [
            new BackgroundTuple(Background.White), new EntityTuple(new Descriptor(null, null, Shape.Circle)), new EntityTuple(new Descriptor(null, null, Shape.Square)),
            new EntityTuple(circle), new EntityTuple(square), new RelationTuple(circle, square, Relation.LeftOf),
        ];
        foreach (var q in questions) output.WriteLine($"{q.Question} {ShapesJudge.Answer(q, seen)}");
        Assert.All(questions, q => Assert.True(ShapesJudge.Answer(q, seen).IsYes, $"{q.Question} → no"));
    }

    /// <summary>
    /// Issue 10's rules for the shipped folder: at most 30 MB, weights in bf16 or fp16 (the connectors keep their
    /// timestep embedding in float32), and every safetensors records the command, seed, steps and commit that made it.
    /// </summary>
    [Fact]
    public void The_shipped_folder_fits_the_budget_and_every_weight_file_names_its_command()
    {
        string folder = Path.Combine(Fixtures.RepoRoot, "models", "shapes-world");
        var files = Directory.GetFiles(folder, "*", SearchOption.AllDirectories);
        long bytes = files.Sum(f => new FileInfo(f).Length);
        Assert.True(bytes <= 30_000_000, $"{folder}: {bytes:N0} bytes, over 30 MB");
        var weights = files.Where(f => f.EndsWith(".safetensors")).ToList();
        Assert.Contains(weights, f => f.EndsWith(Path.Combine("ablations", "tsc-arctic-xs.safetensors")));
        foreach (var f in weights)
        {
            using var file = SafetensorsFile.Open(f);
            Assert.Contains("world train", file.Metadata.GetValueOrDefault("produced_by") ?? "");
            foreach (var key in new[] { "seed", "steps", "commit" }) Assert.True(file.Metadata.ContainsKey(key), $"{f}: no '{key}' in its metadata");
            Assert.All(file.Names.Where(n => !n.StartsWith("time_embedding.")), n => Assert.Contains(file.GetInfo(n).DType, new[] { "BF16", "F16" }));
        }
    }

    /// <summary>
    /// <c>ella world train</c> without flags is the recipe that made the shipped base: every flag its UNet's metadata
    /// records (<c>produced_by</c>) is the default, except the paths. A flag this test does not know fails it, so a new
    /// recipe flag must be checked here too.
    /// </summary>
    [Fact]
    public void The_recipe_defaults_are_the_flags_the_shipped_base_was_trained_with()
    {
        string unet = Path.Combine(Fixtures.RepoRoot, "models", "shapes-world", "unet", "diffusion_pytorch_model.safetensors");
        string command;
        using (var file = SafetensorsFile.Open(unet)) command = file.Metadata["produced_by"];
        output.WriteLine(command);
        var tokens = command.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["ella", "world", "train"], tokens[..3]);
        var defaults = new WorldTrainOptions { WorkDir = "", ModelDir = "", ClipTokenizer = "" };
        var sizes = WorldModelSizes.Default;
        string[] paths = ["--vae", "--out", "--work"];
        // The dtypes' default is auto, which is bf16 on a CPU with native bf16, the kind that trained the shipped model.
        string[] auto = ["--dtype", "--connector-dtype"];
        for (int i = 3; i < tokens.Length; i += 2)
        {
            string flag = tokens[i], value = tokens[i + 1];
            if (paths.Contains(flag)) continue;
            if (auto.Contains(flag)) { Assert.Equal("bf16", value); continue; }
            object expected = flag switch
            {
                "--base-steps" => defaults.Base.MaxSteps,
                "--batch" => defaults.Base.Batch,
                "--unet-layers" => sizes.UNetLayersPerBlock,
                "--width" => sizes.Width,
                "--beta-schedule" => defaults.BetaSchedule,
                "--token-embedding-std" => defaults.TokenEmbeddingStd,
                "--connector-steps" => defaults.Connector.MaxSteps,
                "--connector-samples" => defaults.ConnectorSamples,
                "--connector-distill" => defaults.ConnectorDistill,
                _ => throw new Xunit.Sdk.XunitException($"{flag} {value}: a flag this test does not check against the recipe's defaults"),
            };
            Assert.True(expected.ToString() == value || (expected is double d && double.Parse(value, System.Globalization.CultureInfo.InvariantCulture) == d),
                $"{flag} {value}: the recipe's default is {expected}");
        }
        Assert.Equal(defaults.Base.Batch, defaults.Connector.Batch);
    }

    static RgbImage Downscale(RgbImage image, int factor)
    {
        var small = new RgbImage(image.Width / factor, image.Height / factor);
        for (int y = 0; y < small.Height; y++)
            for (int x = 0; x < small.Width; x++)
                for (int c = 0; c < 3; c++)
                    small.Pixels[(y * small.Width + x) * 3 + c] = image.Pixels[((y * factor) * image.Width + x * factor) * 3 + c];
        return small;
    }
}
