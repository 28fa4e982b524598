using System.Text;
using System.Text.Json;
using Ella.Cli;
using Ella.Cli.Commands.Train;
using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Tests.Infrastructure;
using Ella.Tests.Training.Data;
using Ella.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Training;

/// <summary>`ella train` end to end on the tiny pipeline fixture model (live encoding with the tiny T5).</summary>
public sealed class TrainCommandTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"ella-train-{Guid.NewGuid():N}");
    public TrainCommandTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, true);

    static string Sd => Fixtures.PathOf("diffusion", "pipeline", "model");

    string T5() => TinyTrainingFiles.T5(_dir);

    /// <summary>Two good image/caption pairs, a corrupt image and a half-transparent one.</summary>
    string Data() => TinyTrainingFiles.Captions(_dir,
        ("c.png", Encoding.ASCII.GetBytes("not an image"), "broken"), ("e.png", TestImages.Png(24, 24, 128), "half transparent"));

    string[] Common(string output, int steps) =>
        ["train", "--sd", Sd, "--t5", T5(), "--data", Data(), "--output", output, "--max-steps", steps.ToString(), "--batch", "2",
         "--resolution", "64", "--seed", "5", "--connector", "tsc", "--blocks", "1", "--lr", "1e-3", "--caption-dropout", "0.5"];

    [Fact]
    public void Short_run_writes_checkpoints_log_plot_and_validation_grids()
    {
        string output = Path.Combine(_dir, "run");
        string prompts = Path.Combine(_dir, "prompts.txt");
        File.WriteAllLines(prompts, ["a red square", "", "a gradient"]);
        var r = CliRunner.Run([.. Common(output, 3), "--save-every", "2", "--keep-last", "1", "--validation-prompts", prompts, "--validate-every", "2", "--validation-steps", "2",
            "--snr-gamma", "5", "--lr-schedule", "cosine", "--warmup-steps", "1", "--grad-accum", "2"]);
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("step 3/3", r.Error);
        Assert.Contains("samples/s", r.Error);
        Assert.Contains("ETA", r.Error);
        Assert.Contains("1 samples skipped", r.Error);
        Assert.Equal(["checkpoint-3"], Directory.GetDirectories(output, "checkpoint-*").Select(Path.GetFileName)); // --keep-last 1
        foreach (var f in new[] { "connector.safetensors", "optimizer.bin", "rng.safetensors", "state.json" })
            Assert.True(File.Exists(Path.Combine(output, "checkpoint-3", f)), f);
        var lines = File.ReadAllLines(Path.Combine(output, "log.jsonl"));
        Assert.Equal(3, lines.Length);
        for (int i = 0; i < 3; i++)
        {
            using var d = JsonDocument.Parse(lines[i]);
            Assert.Equal(i + 1, d.RootElement.GetProperty("step").GetInt32());
            foreach (var key in new[] { "loss", "grad_norm", "lr", "samples_per_s" }) Assert.True(double.IsFinite(d.RootElement.GetProperty(key).GetDouble()), key);
        }
        using (var d = JsonDocument.Parse(lines[0])) Assert.Equal(0.0, d.RootElement.GetProperty("lr").GetDouble()); // warm-up starts at 0
        Assert.True(File.Exists(Path.Combine(output, "validation", "step-000002.png")));
        Assert.True(File.Exists(Path.Combine(output, "validation", "step-000003.png")));
        var grid = Ella.Imaging.RgbImage.Load(Path.Combine(output, "validation", "step-000003.png"));
        Assert.True(grid.Width >= 2 * 64 && grid.Height >= 64);
        using (var c = Connectors.FromPretrained(Path.Combine(output, "connector.safetensors")))
        {
            Assert.Equal("tsc", c.Config.ConnectorType);
            Assert.Equal(64, c.Config.InputDim); // fitted to the text encoder
            Assert.Equal(1, c.Config.Layers);
        }
        Assert.Equal("t5", ConnectorMetadata.TextEncoder(Path.Combine(output, "connector.safetensors")));
        Assert.Equal("t5", ConnectorMetadata.TextEncoder(Path.Combine(output, "checkpoint-3", "connector.safetensors")));
        var plot = CliRunner.Run("train", "plot", output);
        Assert.True(plot.ExitCode == 0, plot.Error);
        var png = Ella.Imaging.RgbImage.Load(Path.Combine(output, "loss.png"));
        Assert.True(png.Width > 100 && png.Height > 100);
    }

    [Fact]
    public void Four_steps_equal_two_plus_resume_plus_two()
    {
        string straight = Path.Combine(_dir, "straight"), resumed = Path.Combine(_dir, "resumed");
        var a = CliRunner.Run([.. Common(straight, 4), "--save-every", "10"]);
        Assert.True(a.ExitCode == 0, a.Error);
        var b1 = CliRunner.Run([.. Common(resumed, 2), "--save-every", "10"]);
        Assert.True(b1.ExitCode == 0, b1.Error);
        var b2 = CliRunner.Run([.. Common(resumed, 4), "--save-every", "10", "--resume", resumed]);
        Assert.True(b2.ExitCode == 0, b2.Error);
        Assert.Contains("resumed from", b2.Error);
        using var fa = Ella.Weights.SafetensorsFile.Open(Path.Combine(straight, "connector.safetensors"));
        using var fb = Ella.Weights.SafetensorsFile.Open(Path.Combine(resumed, "connector.safetensors"));
        Assert.Equal(fa.Names, fb.Names);
        foreach (var name in fa.Names)
        {
            using var x = fa.Read(name);
            using var y = fb.Read(name);
            Assert.True(x.eq(y).all().item<bool>(), $"{name} differs after resume");
        }
        Assert.Equal(File.ReadAllLines(Path.Combine(straight, "log.jsonl")).Select(LossOf), File.ReadAllLines(Path.Combine(resumed, "log.jsonl")).Select(LossOf));
    }

    static string? RecordedDType(string output)
    {
        string last = Directory.GetDirectories(output, "checkpoint-*").OrderBy(d => int.Parse(Path.GetFileName(d)["checkpoint-".Length..])).Last();
        using var d = JsonDocument.Parse(File.ReadAllText(Path.Combine(last, "state.json")));
        return d.RootElement.TryGetProperty("dtype", out var v) ? v.GetString() : null;
    }

    [Fact]
    public void A_resumed_run_keeps_its_dtype_under_auto_and_refuses_another()
    {
        string output = Path.Combine(_dir, "dtype");
        var a = CliRunner.Run([.. Common(output, 1), "--dtype", "fp32", "--save-every", "10"]);
        Assert.True(a.ExitCode == 0, a.Error);
        Assert.Equal("fp32", RecordedDType(output));
        var other = CliRunner.Run([.. Common(output, 2), "--save-every", "10", "--resume", output, "--dtype", "bf16"]);
        Assert.True(other.ExitCode == 2, other.Error);
        Assert.Contains("--dtype bf16", other.Error);
        Assert.Contains("trains in fp32", other.Error);
        Assert.DoesNotContain("step 2/", other.Error);
        // The default, auto, continues in the run's own dtype whatever this CPU would pick.
        var auto = CliRunner.Run([.. Common(output, 2), "--save-every", "10", "--resume", output]);
        Assert.True(auto.ExitCode == 0, auto.Error);
        Assert.Contains("step 2/2", auto.Error);
        Assert.Contains("UNet", auto.Error);
        Assert.Contains("in fp32", auto.Error);
        Assert.Equal("fp32", RecordedDType(output));
    }

    static double LossOf(string line)
    {
        using var d = JsonDocument.Parse(line);
        return d.RootElement.GetProperty("loss").GetDouble();
    }

    [Fact]
    public void Bad_flags_and_shape_mismatches_fail_before_training()
    {
        string output = Path.Combine(_dir, "bad");
        string narrow = Path.Combine(_dir, "narrow.safetensors"), wrongInput = Path.Combine(_dir, "wrong-input.safetensors");
        Ella.Cli.Commands.Connector.ConnectorInitCommand.Write(new EllaConnectorConfig { Width = 32, TimeEmbedDim = 32, InputDim = 64, Layers = 1, Heads = 4, NumLatents = 4, TimeChannel = 16 }, narrow, 0);
        Ella.Cli.Commands.Connector.ConnectorInitCommand.Write(new EllaConnectorConfig { Width = 64, TimeEmbedDim = 64, InputDim = 40, Layers = 1, Heads = 4, NumLatents = 4, TimeChannel = 16 }, wrongInput, 0);
        foreach (var (args, expected) in new (string[], string)[]
        {
            ([.. Common(output, 2), "--init", narrow], "cross_attention_dim"),
            ([.. Common(output, 2), "--init", wrongInput], "text features"),
            ([.. Common(output, 2), "--batch", "0"], "--batch"),
            ([.. Common(output, 2), "--resolution", "30"], "--resolution"),
            ([.. Common(output, 2), "--lr-schedule", "exp"], "exp"),
            ([.. Common(output, 2), "--caption-dropout", "2"], "--caption-dropout"),
            ([.. Common(output, 2), "--resume", Path.Combine(_dir, "nothing")], "--resume"),
            (["train", "--sd", Sd, "--output", output, "--max-steps", "1"], "--cache"),
        })
        {
            var r = CliRunner.Run(args);
            Assert.True(r.ExitCode == 2, $"{string.Join(' ', args)} → {r.ExitCode}: {r.Error}");
            Assert.Contains(expected, r.Error);
            Assert.DoesNotContain("step 1/", r.Error);
            Assert.Single(r.Error.Trim().Split('\n'), l => l.StartsWith("error:") || l.Contains("error"));
        }
        Assert.False(Directory.Exists(output) && Directory.GetFiles(output, "log.jsonl").Length > 0);
    }

    [Fact]
    public void Diverging_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint()
    {
        string output = Path.Combine(_dir, "nan");
        var args = Common(output, 4).ToList();
        args[args.IndexOf("--lr") + 1] = "1e30";
        var r = CliRunner.Run([.. args, "--save-every", "1", "--max-grad-norm", "0"]);
        Assert.Equal(EllaCli.ExitInternal, r.ExitCode);
        Assert.Matches(@"step \d: the loss is", r.Error);
        Assert.NotEmpty(Directory.GetDirectories(output, "checkpoint-*"));
        Assert.False(File.Exists(Path.Combine(output, "connector.safetensors")));
    }

    [Fact]
    public void Interrupt_saves_a_checkpoint_and_exits_cleanly()
    {
        string output = Path.Combine(_dir, "stop");
        using var cts = new CancellationTokenSource();
        var err = new CancelOnLine("step 1/", cts);
        var options = new TrainingOptions
        {
            StableDiffusion = Sd, T5 = T5(), Data = [Data()], Output = output, MaxSteps = 5, Batch = 1, Resolution = 64, Blocks = 1, SaveEvery = 100,
        };
        int code = TrainCommand.Run(new CliContext(new StringWriter(), err), options, cts.Token);
        Assert.Equal(130, code);
        Assert.Contains("interrupted at step 1", err.ToString());
        Assert.True(Directory.Exists(Path.Combine(output, "checkpoint-1")));
    }

    sealed class CancelOnLine(string marker, CancellationTokenSource cts) : StringWriter
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value != null && value.StartsWith(marker)) cts.Cancel();
        }
    }
}
