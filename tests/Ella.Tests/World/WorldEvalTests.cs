using System.Text.Json;
using Ella.Configs;
using Ella.Evaluation.WorldBench;
using Ella.Imaging;
using Ella.Modules.Ella;
using Ella.Tests.Infrastructure;
using Ella.Tests.Robustness;
using Ella.World.Rendering;
using Ella.World.Splits;
using static TorchSharp.torch;

namespace Ella.Tests.World;

/// <summary>
/// <c>ella world eval</c> on a tiny random world folder: the tiny fixture UNet/VAE/CLIP with the real CLIP vocabulary,
/// a random TSC at <c>ella/connector.safetensors</c> and a random MLP at <c>ablations/mlp.safetensors</c>, both reading
/// MiniLM (their <c>text_encoder</c> metadata); the other ablations are missing.
/// </summary>
public sealed class WorldEvalTests : IDisposable
{
    static WorldEvalTests() => Fixtures.InitTorch();

    static readonly string[] PresentRows = ["base", "ella", "ella+clip", "mlp"];

    readonly TinyModels _models = new();
    readonly string _dir = Directory.CreateTempSubdirectory("ella-world-eval-").FullName;

    public void Dispose()
    {
        _models.Dispose();
        Directory.Delete(_dir, true);
    }

    string World()
    {
        string world = _models.StableDiffusion("world", Fixtures.PathOf("diffusion", "pipeline", "model", "unet"),
            Fixtures.PathOf("diffusion", "pipeline", "model", "vae"), withClip: true);
        Directory.CreateDirectory(Path.Combine(world, "ella"));
        Directory.CreateDirectory(Path.Combine(world, "ablations"));
        var minilm = new Dictionary<string, string> { ["text_encoder"] = "minilm" };
        manual_seed(21);
        using (var tsc = Connectors.Create(new EllaConnectorConfig { TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 1, Heads = 4, NumLatents = 8, InputDim = 384 }))
            tsc.Save(Path.Combine(world, "ella", "connector.safetensors"), minilm);
        using (var mlp = Connectors.Create(new EllaConnectorConfig { ConnectorType = "mlp", TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 1, Heads = 4, NumLatents = 8, InputDim = 384 }))
            mlp.Save(Path.Combine(world, "ablations", "mlp.safetensors"), minilm);
        return world;
    }

    /// <summary>A quick run (2 prompts a set, 1 image, 2 steps, fp32); flags in <paramref name="extra"/> replace these.</summary>
    static string[] Eval(string world, string outDir, params string[] extra)
    {
        var flags = new Dictionary<string, string> { ["--limit"] = "2", ["--images"] = "1", ["--steps"] = "2", ["--dtype"] = "fp32", ["--threads"] = "1" };
        foreach (var flag in extra) flags.Remove(flag);
        return ["world", "eval", "--model", world, "--out", outDir, .. flags.SelectMany(kv => new[] { kv.Key, kv.Value }), .. extra];
    }

    [Fact]
    public void Eval_writes_images_table_grid_and_the_scores_dpg_score_gives_and_resumes()
    {
        string world = World(), outDir = Path.Combine(_dir, "out");
        // A ground-truth render already in base's folder is kept (the run resumes past it) and judged.
        var truthItem = WorldSplits.Item(WorldSplit.Eval, 1);
        string preset = Path.Combine(outDir, "eval", "base", truthItem.Id + ".png");
        Directory.CreateDirectory(Path.GetDirectoryName(preset)!);
        SceneRenderer.Render(truthItem.Scene).SavePng(preset);
        byte[] presetBytes = File.ReadAllBytes(preset);

        var r = CliRunner.Run(Eval(world, outDir));
        TinyModels.OneThread();
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("row resampler skipped", r.Error);
        Assert.Contains("row tsc-arctic-xs skipped", r.Error);
        Assert.Contains("ETA", r.Error);

        foreach (var (set, split) in new[] { ("eval", WorldSplit.Eval), ("paraphrase", WorldSplit.Paraphrase) })
        {
            foreach (var row in PresentRows)
            {
                string dir = Path.Combine(outDir, set, row);
                Assert.Equal(Enumerable.Range(0, 2).Select(i => WorldSplits.Item(split, i).Id + ".png").Order(),
                    Directory.GetFiles(dir, "*.png").Select(Path.GetFileName).Order());
                foreach (var png in Directory.GetFiles(dir, "*.png"))
                    Assert.Equal((64, 64), (RgbImage.Load(png).Width, RgbImage.Load(png).Height));
                Assert.True(File.Exists(Path.Combine(dir, "dpg_results.csv")));
            }
            Assert.False(Directory.Exists(Path.Combine(outDir, set, "resampler")));
            Assert.Equal(WorldSplits.Size(split), Directory.GetFiles(Path.Combine(outDir, set, "prompts"), "*.txt").Length);
        }
        Assert.Equal(presetBytes, File.ReadAllBytes(preset));
        // Every row saw the same seed for the same prompt; rows differ in their conditioning only.
        Assert.Contains("Seed: 1,", PngText.Read(File.ReadAllBytes(Path.Combine(outDir, "eval", "ella", truthItem.Id + ".png")))["parameters"]);
        Assert.Contains("Seed: 1,", PngText.Read(File.ReadAllBytes(Path.Combine(outDir, "paraphrase", "mlp", "paraphrase1.png")))["parameters"]);

        // The table: one line per present row, overall and L1 columns for each set; it is what stdout shows.
        string table = File.ReadAllText(Path.Combine(outDir, "table.md"));
        Assert.Equal(table, r.Out);
        var lines = table.Split('\n');
        Assert.StartsWith("| row | eval overall |", lines[0]);
        Assert.Contains("| paraphrase overall |", lines[0]);
        Assert.Equal(PresentRows, lines.Skip(2).TakeWhile(l => l.StartsWith('|')).Select(l => l.Split('|')[1].Trim()));

        // results.json holds what `ella dpg score --judge shapes` gives on the written images.
        using var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json")));
        foreach (var set in new[] { "eval", "paraphrase" })
            foreach (var row in PresentRows)
            {
                var score = CliRunner.Run("dpg", "score", "--images", Path.Combine(outDir, set, row), "--csv", Path.Combine(outDir, set, "dpg_bench.csv"),
                    "--resolution", "64", "--pic-num", "1", "--judge", "shapes", "--out", Path.Combine(_dir, "score", set, row), "--json");
                Assert.True(score.ExitCode == 0, score.Error);
                using var expected = JsonDocument.Parse(score.Out);
                var mine = results.RootElement.GetProperty("sets").GetProperty(set).GetProperty("rows").GetProperty(row);
                Assert.True(expected.RootElement.GetProperty("scored").GetInt32() >= 1);
                Assert.Equal(expected.RootElement.GetProperty("scored").GetInt32(), mine.GetProperty("scored").GetInt32());
                Assert.Equal(expected.RootElement.GetProperty("score").GetDouble(), mine.GetProperty("score").GetDouble());
                var l1 = expected.RootElement.GetProperty("l1").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
                Assert.Equal(l1, mine.GetProperty("l1").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble()));
                Assert.NotEmpty(l1);
                foreach (var (category, value) in l1)
                    Assert.Contains($" {value:F2} |", lines.First(l => l.StartsWith($"| {row} |")));
            }
        // The ground truth is judged right: base on eval has an item at 100.
        var baseItems = File.ReadAllLines(Path.Combine(outDir, "eval", "base", "dpg_results.csv"));
        Assert.Contains(baseItems, l => l.StartsWith(truthItem.Id + ",") && l.EndsWith(",1"));

        var grid = RgbImage.Load(Path.Combine(outDir, "grid.png"));
        Assert.True(grid.Width >= 2 * 2 * 64 * 3, $"grid is {grid.Width} wide");

        // A second run finds every image and only scores again: the same numbers.
        string before = File.ReadAllText(Path.Combine(outDir, "results.json"));
        var again = CliRunner.Run(Eval(world, outDir, "--json"));
        TinyModels.OneThread();
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.DoesNotContain("loaded", again.Error);
        Assert.Equal(before, File.ReadAllText(Path.Combine(outDir, "results.json")));
        Assert.Equal(before.Trim(), again.Out.Trim());

        // Other generation settings do not resume into the same folder.
        var other = CliRunner.Run(Eval(world, outDir, "--steps", "3"));
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("--steps 2", other.Error);
    }

    [Fact]
    public void A_run_also_reports_the_rows_an_earlier_run_left_complete_in_its_folder()
    {
        string world = World(), outDir = Path.Combine(_dir, "out");
        var first = CliRunner.Run(Eval(world, outDir, "--rows", "base", "--sets", "eval"));
        Assert.True(first.ExitCode == 0, first.Error);
        Assert.False(File.Exists(Path.Combine(outDir, "grid.png")));

        var second = CliRunner.Run(Eval(world, outDir, "--rows", "ella", "--sets", "eval"));
        TinyModels.OneThread();
        Assert.True(second.ExitCode == 0, second.Error);
        Assert.Contains("base: reported from an earlier run", second.Error);
        Assert.DoesNotContain("eval/base:", second.Error);
        using (var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json"))))
            Assert.Equal(["base", "ella"], results.RootElement.GetProperty("sets").GetProperty("eval").GetProperty("rows").EnumerateObject().Select(p => p.Name).Order());
        var table = File.ReadAllText(Path.Combine(outDir, "table.md")).Split('\n');
        Assert.Equal(["base", "ella"], table.Skip(2).TakeWhile(l => l.StartsWith('|')).Select(l => l.Split('|')[1].Trim()));
        Assert.True(File.Exists(Path.Combine(outDir, "grid.png")), "grid.png: base and ella are both in the folder now");

        // A row with an image missing is not complete: it is neither reported nor generated unless asked for.
        File.Delete(Path.Combine(outDir, "eval", "base", WorldSplits.Item(WorldSplit.Eval, 1).Id + ".png"));
        var third = CliRunner.Run(Eval(world, outDir, "--rows", "ella", "--sets", "eval"));
        Assert.True(third.ExitCode == 0, third.Error);
        using (var results = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "results.json"))))
            Assert.Equal(["ella"], results.RootElement.GetProperty("sets").GetProperty("eval").GetProperty("rows").EnumerateObject().Select(p => p.Name));
        Assert.False(File.Exists(Path.Combine(outDir, "eval", "base", WorldSplits.Item(WorldSplit.Eval, 1).Id + ".png")));
    }

    [Fact]
    public void A_row_named_explicitly_must_have_its_file()
    {
        string world = World();
        var r = CliRunner.Run(Eval(world, Path.Combine(_dir, "out"), "--rows", "base,resampler"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--rows resampler", r.Error);
        Assert.Contains("resampler.safetensors", r.Error);
        Assert.False(Directory.Exists(Path.Combine(_dir, "out")));
    }

    [Theory]
    [InlineData("--sets", "eval,test")]
    [InlineData("--rows", "base,clip")]
    [InlineData("--images", "0")]
    [InlineData("--images", "5")]
    [InlineData("--images", "two")]
    [InlineData("--steps", "0")]
    [InlineData("--limit", "0")]
    [InlineData("--guidance", "-1")]
    [InlineData("--dtype", "fp64")]
    [InlineData("--scheduler", "heun")]
    [InlineData("--seed", "-3")]
    [InlineData("--scoring", "best")]
    [InlineData("--threads", "0")]
    [InlineData("--model", "/nonexistent/world")]
    public void Bad_flags_exit_2_naming_the_flag(string flag, string value)
    {
        // The model folder is any existing folder: every flag is checked before the model is read.
        var args = new List<string> { "world", "eval", "--out", Path.Combine(_dir, "out"), flag, value };
        if (flag != "--model") args.AddRange(["--model", _dir]);
        var r = CliRunner.Run(args.ToArray());
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(flag, r.Error);
        Assert.DoesNotContain("   at ", r.Error);
        Assert.False(Directory.Exists(Path.Combine(_dir, "out")));
    }

    [Fact]
    public void Without_a_model_the_error_names_the_flag_and_the_variable()
    {
        using var env = new EnvironmentOverride().Set("ELLA_WORLD_MODEL", Path.Combine(_dir, "no-world-here"));
        var r = CliRunner.Run("world", "eval", "--out", Path.Combine(_dir, "out"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--model", r.Error);
        Assert.Contains("ELLA_WORLD_MODEL", r.Error);
    }

    [Fact]
    public void Wrap_keeps_every_word_within_the_width()
    {
        var lines = WorldEvalGrid.Wrap("a large red circle to the left of a small blue square, on a beige background", 20);
        Assert.All(lines, l => Assert.True(l.Length <= 20, l));
        Assert.Equal("a large red circle to the left of a small blue square, on a beige background", string.Join(' ', lines));
    }
}
