using System.Text.Json;
using System.Text.RegularExpressions;
using Ella.Evaluation.DpgBench;
using Ella.Tests.Infrastructure;

namespace Ella.Tests.Evaluation;

/// <summary>Every case folder under fixtures/dpg, scored through the CLI in both modes, equals the recorded numbers.</summary>
public sealed class DpgScoreTests : IDisposable
{
    readonly string _out = Directory.CreateTempSubdirectory("ella-dpg-").FullName;
    public void Dispose() => Directory.Delete(_out, true);

    public static IEnumerable<object[]> Cases() =>
        from dir in Directory.GetDirectories(Fixtures.PathOf("dpg")).Order()
        where File.Exists(Path.Combine(dir, "dpg_bench.csv"))
        from mode in new[] { "official", "corrected" }
        where File.Exists(Path.Combine(dir, $"expected-{mode}.json"))
        select new object[] { Path.GetFileName(dir), mode };

    /// <summary>The crop count the authors' run used: crop scores per line of its official_results.txt.</summary>
    static int PicNum(string dir)
    {
        var line = File.ReadLines(Path.Combine(dir, "official_results.txt")).First(l => Regex.IsMatch(l, @"\.(png|jpg), "));
        return line.Split(',').Length - 2;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Cli_reproduces_the_expected_numbers(string name, string mode)
    {
        string dir = Fixtures.PathOf("dpg", name);
        string image = Directory.GetFiles(Path.Combine(dir, "images"), "*.png").First();
        int resolution = Imaging.RgbImage.Load(image).Width / 2;
        var r = CliRunner.Run("dpg", "score", "--images", Path.Combine(dir, "images"), "--csv", Path.Combine(dir, "dpg_bench.csv"),
            "--resolution", resolution.ToString(), "--pic-num", PicNum(dir).ToString(), "--scoring", mode,
            "--judge", "replay", "--answers", Path.Combine(dir, "answers.jsonl"), "--out", _out, "--json");
        Assert.True(r.ExitCode == 0, r.Error);
        using var ours = JsonDocument.Parse(r.Out);
        using var expected = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, $"expected-{mode}.json")));
        Assert.Equal(expected.RootElement.GetProperty("score").GetDouble(), ours.RootElement.GetProperty("score").GetDouble(), 1e-9);
        foreach (var section in new[] { "l1", "l2", "items" })
        {
            var e = expected.RootElement.GetProperty(section).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
            var o = ours.RootElement.GetProperty(section).EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetDouble());
            Assert.Equal(e.Keys.Order(), o.Keys.Order());
            foreach (var (k, v) in e) Assert.True(Math.Abs(v - o[k]) <= 1e-9, $"{section}[{k}]: {o[k]} vs expected {v}");
        }
        Assert.True(File.Exists(Path.Combine(_out, "dpg_results.csv")));
        Assert.True(File.Exists(Path.Combine(_out, "dpg_detail.txt")));
        Assert.Contains("not_in_benchmark.png", ours.RootElement.GetProperty("skipped").EnumerateObject().Select(p => p.Name));
    }

    string Csv(string name, string body)
    {
        string path = Path.Combine(_out, name);
        File.WriteAllText(path, body);
        return path;
    }

    const string Header = "item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,question_natural_language\n";

    [Theory]
    [InlineData("empty", "", "empty")]
    [InlineData("missing-column", "item_id,text\n1,a\n", "missing column")]
    [InlineData("bad-id", Header + "a,t,,x,0,entity,whole,entity - whole (a),q?\n", "row 2")]
    [InlineData("bad-dependency", Header + "a,t,,1,0,entity,whole,entity - whole (a),q?\na,t,,2,7,entity,whole,entity - whole (b),q?\n", "row 3")]
    [InlineData("no-rows", Header, "no data rows")]
    // A stray character after a closing quote (what a binary file given as --csv looks like to a CSV reader).
    [InlineData("bad-quote", Header + "a,\"t\"x,,1,0,entity,whole,entity - whole (a),q?\n", "not a valid CSV file")]
    public void Bad_csv_gets_an_error_naming_file_and_row(string name, string body, string expected)
    {
        string path = Csv(name + ".csv", body);
        var e = Assert.Throws<EllaException>(() => DpgBenchCsv.Load(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Item_ids_stay_strings_and_graphs_keep_csv_order()
    {
        var rows = DpgBenchCsv.Load(Fixtures.PathOf("dpg", "four-images", "dpg_bench.csv"));
        var official = DpgBenchCsv.Group(rows, official: true);
        var all = DpgBenchCsv.Group(rows, official: false);
        Assert.Contains("COCOval2014000000010363", all.Keys);
        Assert.Equal(all["0"].Propositions.Count - 1, official["0"].Propositions.Count); // the first data row is dropped
    }

    [Fact]
    public void The_real_prompts_folder_has_1065_prompts()
    {
        var prompts = DpgBenchCsv.LoadPrompts(Path.Combine(Fixtures.SharedData, "dpg_bench", "prompts"));
        Assert.Equal(1065, prompts.Count);
    }
}
