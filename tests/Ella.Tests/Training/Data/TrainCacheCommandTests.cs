using System.CommandLine;
using System.Text;
using Ella.Cli;
using Ella.Cli.Commands.Train;
using Ella.Tests.Infrastructure;
using Ella.Training.Data;

namespace Ella.Tests.Training.Data;

public sealed class TrainCacheCommandTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-cachecli-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>Runs <c>ella train cache ...</c> in-process with the same error handling as <see cref="EllaCli.Run"/>.</summary>
    static CliRunner.Result Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var ctx = new CliContext(stdout, stderr);
        var train = new Command("train") { TrainCacheCommand.Create(ctx) };
        var root = new RootCommand { train };
        var parse = root.Parse(["train", "cache", .. args]);
        int code;
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) stderr.WriteLine($"error: {e.Message}");
            code = EllaCli.ExitUsage;
        }
        else
        {
            try
            {
                code = parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
            }
            catch (EllaException e)
            {
                stderr.WriteLine($"error: {e.Message}");
                code = EllaCli.ExitUsage;
            }
        }
        return new CliRunner.Result(code, stdout.ToString(), stderr.ToString());
    }

    (string T5, string Sd) TinyModels()
    {
        string t5 = Path.Combine(_dir, "t5");
        Directory.CreateDirectory(t5);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.PathOf("text", "t5", f), Path.Combine(t5, f));
        File.Copy(Fixtures.PathOf("text", "t5-tokenizer", "spiece.model"), Path.Combine(t5, "spiece.model"));
        return (t5, Fixtures.PathOf("diffusion", "pipeline", "model"));
    }

    string Data()
    {
        string d = Path.Combine(_dir, "data");
        Directory.CreateDirectory(d);
        File.WriteAllBytes(Path.Combine(d, "a.png"), TestImages.Png(20, 16));
        File.WriteAllBytes(Path.Combine(d, "b.png"), TestImages.Png(16, 24));
        File.WriteAllBytes(Path.Combine(d, "c.png"), Encoding.ASCII.GetBytes("not an image"));
        File.WriteAllBytes(Path.Combine(d, "d.png"), TestImages.Png(16, 16));
        File.WriteAllText(Path.Combine(d, "metadata.jsonl"), string.Join("\n",
            """{"file_name": "a.png", "text": "a small red square"}""",
            """{"file_name": "b.png", "text": "a tall picture"}""",
            """{"file_name": "c.png", "text": "broken"}""",
            """{"file_name": "d.png", "text": ""}"""));
        return d;
    }

    [Fact]
    public void Caches_a_folder_and_reports_skips_by_reason()
    {
        var (t5, sd) = TinyModels();
        string data = Data(), cache = Path.Combine(_dir, "cache");
        var r = Run("--sd", sd, "--t5", t5, "--data", data, "--output", cache, "--resolution", "16", "--batch", "2", "--samples-per-file", "2");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("cached 2 of 4 samples", r.Out);
        Assert.Contains("skipped 2 (corrupt image: 1, empty caption: 1)", r.Out);
        Assert.Contains("ETA", r.Error);
        Assert.Contains("c.png", r.Error);
        using (var fc = FeatureCache.Open(cache))
        {
            Assert.Equal(2, fc.Count);
            Assert.Equal(["a.png", "b.png"], fc.Samples.Select(s => s.Key));
        }

        var again = Run("--sd", sd, "--t5", t5, "--data", data, "--output", cache, "--resolution", "16", "--batch", "2", "--samples-per-file", "2");
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.Contains("0 written, 2 kept from earlier runs", again.Out);
    }

    [Theory]
    [InlineData("--resolution", "12", "--resolution 12")]
    [InlineData("--shard", "2/2", "--shard 2/2")]
    [InlineData("--batch", "0", "--batch 0")]
    public void Bad_flags_exit_2_with_one_clear_line(string flag, string value, string expected)
    {
        var (t5, sd) = TinyModels();
        var r = Run("--sd", sd, "--t5", t5, "--data", Data(), "--output", Path.Combine(_dir, "c"), flag, value);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(expected, r.Error);
    }

    [Fact]
    public void Missing_data_exits_2_naming_the_path()
    {
        var (t5, sd) = TinyModels();
        string missing = Path.Combine(_dir, "nowhere");
        var r = Run("--sd", sd, "--t5", t5, "--data", missing, "--output", Path.Combine(_dir, "c"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(missing, r.Error);
        Assert.False(Directory.Exists(Path.Combine(_dir, "c")));
    }
}
