using Ella.Cli.Commands.Dpg;
using Ella.Configs;
using Ella.Imaging;
using Ella.Modules.Ella;
using Ella.Tests.Infrastructure;

namespace Ella.Tests.Evaluation;

public sealed class DpgGenerateTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-dpggen-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    (string T5, string Ella, string Sd) TinyModels()
    {
        string t5 = Path.Combine(_dir, "t5");
        Directory.CreateDirectory(t5);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.PathOf("text", "t5", f), Path.Combine(t5, f));
        File.Copy(Fixtures.PathOf("text", "t5-tokenizer", "spiece.model"), Path.Combine(t5, "spiece.model"));
        string ella = Path.Combine(_dir, "ella64.safetensors");
        using (var c = new EllaConnector(new EllaConnectorConfig { TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 1, Heads = 4, NumLatents = 8, InputDim = 64 }))
            c.Save(ella);
        return (t5, ella, Fixtures.PathOf("diffusion", "pipeline", "model"));
    }

    [Fact]
    public void Grids_are_resumable_shardable_and_follow_the_seed_schedule()
    {
        var (t5, ella, sd) = TinyModels();
        string prompts = Path.Combine(_dir, "prompts");
        Directory.CreateDirectory(prompts);
        foreach (var name in new[] { "0.txt", "1.txt", "countbench1.txt" })
            File.Copy(Path.Combine(Fixtures.SharedData, "dpg_bench", "prompts", name), Path.Combine(prompts, name));
        string outDir = Path.Combine(_dir, "out");
        string[] Args(params string[] extra) =>
            ["dpg", "generate", "--prompts", prompts, "--out", outDir, "--sd", sd, "--t5", t5, "--ella", ella,
             "--steps", "2", "--width", "64", "--height", "64", "--seed", "100", .. extra];

        var first = CliRunner.Run(Args("--shard", "1/2"));
        Assert.True(first.ExitCode == 0, first.Error);
        Assert.Equal(["1.png"], Directory.GetFiles(outDir, "*.png").Select(Path.GetFileName).Order());
        var all = CliRunner.Run(Args());
        Assert.True(all.ExitCode == 0, all.Error);
        Assert.Contains("1 already done, 2 to generate", all.Error);
        Assert.Equal(["0.png", "1.png", "countbench1.png"], Directory.GetFiles(outDir, "*.png").Select(Path.GetFileName).Order());
        var again = CliRunner.Run(Args());
        Assert.Contains("0 to generate", again.Error);

        var grid = RgbImage.Load(Path.Combine(outDir, "1.png"));
        Assert.Equal(128, grid.Width);
        Assert.Equal(128, grid.Height);
        // Prompt 1 (second in sorted order) used seed 100 + 1 with a batch of 4: its top-left cell is image 0 of that batch.
        string single = Path.Combine(_dir, "single.png");
        var r = CliRunner.Run("generate", "--prompt", File.ReadAllText(Path.Combine(prompts, "1.txt")).Trim(), "--sd", sd, "--t5", t5, "--ella", ella,
            "--steps", "2", "--width", "64", "--height", "64", "--seed", "101", "--batch", "4", "-o", single);
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Equal(RgbImage.Load(Path.Combine(_dir, "single-0.png")).Pixels, grid.Crop(0, 0, 64, 64).Pixels);
        Assert.Equal(RgbImage.Load(Path.Combine(_dir, "single-3.png")).Pixels, grid.Crop(64, 64, 64, 64).Pixels);
    }

    [Fact]
    public void Shards_come_from_the_option_or_the_batch_system()
    {
        Assert.Equal((2, 8), DpgGenerateCommand.ResolveShard("2/8", _ => null));
        Assert.Equal((0, 1), DpgGenerateCommand.ResolveShard(null, _ => null));
        var k8s = new Dictionary<string, string> { ["JOB_COMPLETION_INDEX"] = "3", ["ELLA_SHARD_COUNT"] = "4" };
        Assert.Equal((3, 4), DpgGenerateCommand.ResolveShard(null, k => k8s.GetValueOrDefault(k)));
        var slurm = new Dictionary<string, string> { ["SLURM_ARRAY_TASK_ID"] = "6", ["SLURM_ARRAY_TASK_MIN"] = "5", ["SLURM_ARRAY_TASK_COUNT"] = "3" };
        Assert.Equal((1, 3), DpgGenerateCommand.ResolveShard(null, k => slurm.GetValueOrDefault(k)));
        Assert.Throws<EllaException>(() => DpgGenerateCommand.ResolveShard("4/4", _ => null));
        Assert.Contains("ELLA_SHARD_COUNT", Assert.Throws<EllaException>(() => DpgGenerateCommand.ResolveShard(null, k => k == "JOB_COMPLETION_INDEX" ? "1" : null)).Message);
    }
}
