using System.Text.Json;
using Ella.Evaluation.DpgBench;
using Ella.Imaging;
using Ella.Tests.Infrastructure;
using Ella.World.Splits;

namespace Ella.Tests.World;

public sealed class WorldCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-world-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void Sample_writes_an_imagefolder_with_dense_and_short_captions()
    {
        string outDir = Path.Combine(_dir, "sample");
        var r = CliRunner.Run("world", "sample", "--count", "5", "--out", outDir, "--seed", "3");
        Assert.True(r.ExitCode == 0, r.Error);
        var lines = File.ReadAllLines(Path.Combine(outDir, "metadata.jsonl"));
        Assert.Equal(5, lines.Length);
        for (int i = 0; i < 5; i++)
        {
            using var doc = JsonDocument.Parse(lines[i]);
            var item = WorldSplits.Item(WorldSplit.Train, i, 3);
            string file = doc.RootElement.GetProperty("file_name").GetString()!;
            Assert.Equal(item.DenseCaption, doc.RootElement.GetProperty("text").GetString());
            Assert.Equal(item.ShortCaption, doc.RootElement.GetProperty("short_text").GetString());
            Assert.Equal(item.Scene.Objects.Count, doc.RootElement.GetProperty("scene").GetProperty("objects").GetArrayLength());
            var image = RgbImage.Load(Path.Combine(outDir, file));
            Assert.Equal((64, 64), (image.Width, image.Height));
        }
        // Continuing the stream into the same folder keeps the earlier lines and replaces rewritten ones.
        Assert.Equal(0, CliRunner.Run("world", "sample", "--count", "3", "--start", "4", "--out", outDir, "--seed", "3").ExitCode);
        var continued = File.ReadAllLines(Path.Combine(outDir, "metadata.jsonl"));
        Assert.Equal(7, continued.Length);
        Assert.Equal(lines[..4], continued[..4]);
        Assert.Equal(lines[4], continued[4]);
        Assert.Equal(Enumerable.Range(0, 7).Select(i => $"train{i:D7}.png"), continued.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("file_name").GetString()));
        // A later stretch of the same stream is the same items.
        string more = Path.Combine(_dir, "more");
        Assert.Equal(0, CliRunner.Run("world", "sample", "--count", "2", "--start", "3", "--out", more, "--seed", "3").ExitCode);
        var moreLines = File.ReadAllLines(Path.Combine(more, "metadata.jsonl"));
        Assert.Equal(lines[3], moreLines[0]);
        Assert.Equal(File.ReadAllBytes(Path.Combine(outDir, "train0000004.png")), File.ReadAllBytes(Path.Combine(more, "train0000004.png")));
    }

    [Theory]
    [InlineData("--split", "eval", "--seed", "1")]
    [InlineData("--split", "eval", "--count", "201")]
    [InlineData("--split", "paraphrase", "--count", "50", "--start", "60")]
    [InlineData("--count", "0")]
    [InlineData("--split", "test")]
    public void Sample_rejects_bad_input_with_one_line(params string[] args)
    {
        var all = new List<string> { "world", "sample", "--out", Path.Combine(_dir, "bad") };
        if (!args.Contains("--count")) all.AddRange(["--count", "3"]);
        all.AddRange(args);
        var r = CliRunner.Run(all.ToArray());
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith("error:", r.Error);
    }

    [Fact]
    public void Sample_refuses_a_folder_whose_metadata_it_cannot_read()
    {
        string outDir = Path.Combine(_dir, "garbage");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "metadata.jsonl"), "not json\n");
        var r = CliRunner.Run("world", "sample", "--count", "1", "--out", outDir);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("metadata.jsonl: line 1", r.Error);
    }

    [Fact]
    public void Dpg_score_with_the_shapes_judge_gives_ground_truth_full_marks()
    {
        string bench = Path.Combine(_dir, "bench");
        Assert.Equal(0, CliRunner.Run("world", "bench", "--out", bench).ExitCode);
        Assert.Equal(WorldSplits.EvalCount, Directory.GetFiles(Path.Combine(bench, "prompts"), "*.txt").Length);
        foreach (var scoring in new[] { "official", "corrected" })
            Score(bench, scoring);
    }

    void Score(string bench, string scoring)
    {
        var r = CliRunner.Run("dpg", "score", "--images", Path.Combine(bench, "truth"), "--csv", Path.Combine(bench, "dpg_bench.csv"),
            "--resolution", "64", "--judge", "shapes", "--scoring", scoring, "--out", Path.Combine(_dir, "score"), "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        using var doc = JsonDocument.Parse(r.Out);
        Assert.Equal(WorldSplits.EvalCount, doc.RootElement.GetProperty("scored").GetInt32());
        Assert.Equal(100.0, doc.RootElement.GetProperty("score").GetDouble(), 1e-9);
        Assert.Equal(["attribute", "entity", "global", "other", "relation"], doc.RootElement.GetProperty("l1").EnumerateObject().Select(p => p.Name).Order());

        // The same renders under other items' names score far lower: the judge looks at the pictures.
        string swapped = Path.Combine(_dir, "swapped-" + scoring);
        Directory.CreateDirectory(swapped);
        for (int i = 0; i < 20; i++) File.Copy(Path.Combine(bench, "truth", $"shapes{i + 1}.png"), Path.Combine(swapped, $"shapes{i}.png"));
        r = CliRunner.Run("dpg", "score", "--images", swapped, "--csv", Path.Combine(bench, "dpg_bench.csv"),
            "--resolution", "64", "--judge", "shapes", "--scoring", scoring, "--out", Path.Combine(_dir, "score2"), "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        using var doc2 = JsonDocument.Parse(r.Out);
        Assert.Equal(20, doc2.RootElement.GetProperty("scored").GetInt32());
        Assert.True(doc2.RootElement.GetProperty("score").GetDouble() < 50, r.Out);
    }

    [Fact]
    public void Paraphrase_bench_is_a_valid_dpg_csv_with_world_tuples()
    {
        string bench = Path.Combine(_dir, "para");
        var r = CliRunner.Run("world", "bench", "--out", bench, "--split", "paraphrase");
        Assert.True(r.ExitCode == 0, r.Error);
        var rows = DpgBenchCsv.Load(Path.Combine(bench, "dpg_bench.csv"));
        var prompts = DpgBenchCsv.LoadPrompts(Path.Combine(bench, "prompts"));
        Assert.Equal(WorldSplits.ParaphraseCount, prompts.Count);
        Assert.Equal(prompts.Keys.Order(), rows.Select(x => x.ItemId).Distinct().Order());
        Assert.All(rows, x => Assert.Equal(prompts[x.ItemId], x.Text));
        Assert.All(rows, x => Assert.NotNull(Ella.World.Questions.WorldTuple.TryParse(x.Tuple)));
        Assert.All(rows, x => Assert.Equal($"{x.CategoryBroad} - {x.CategoryDetailed}", x.L2));
    }

    [Fact]
    public void Shapes_judge_refuses_a_csv_of_other_tuples()
    {
        string dir = Fixtures.PathOf("dpg", "four-images");
        var r = CliRunner.Run("dpg", "score", "--images", Path.Combine(dir, "images"), "--csv", Path.Combine(dir, "dpg_bench.csv"),
            "--resolution", "64", "--judge", "shapes", "--out", Path.Combine(_dir, "x"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("is not a shapes-world tuple", r.Error);
        Assert.Single(r.Error.Trim().Split('\n'));
    }
}
