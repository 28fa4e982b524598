using System.Text.Json;
using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using Ella.Tests.Training.Data;
using Ella.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Training;

/// <summary>
/// `ella train --distill W`: the connector's loss gains W · MSE to the frozen UNet's prediction from the model's own
/// CLIP text encoder on the same caption (the base as teacher). Checked against the same quantities computed by hand,
/// shown to teach (repeated steps on one batch bring the student's prediction towards the teacher's), and refused
/// where it cannot run.
/// </summary>
public sealed class DistillationTests : IDisposable
{
    readonly TinyWorldFolder _world = new();
    readonly string _dir = Directory.CreateTempSubdirectory("ella-distill-").FullName;

    public void Dispose()
    {
        _world.Dispose();
        Directory.Delete(_dir, true);
    }

    const string Caption = "two blue circles above a green triangle";

    TrainingBatch Batch(bool dropSecond)
    {
        var g = new Generator(5);
        var latents = randn([2, 4, TinyWorldFolder.SampleSize, TinyWorldFolder.SampleSize], generator: g);
        var noise = randn([2, 4, TinyWorldFolder.SampleSize, TinyWorldFolder.SampleSize], generator: g);
        var t = tensor(new long[] { 100, 800 });
        var features = new List<Tensor> { randn([7, 384], generator: g), randn([5, 384], generator: g) };
        return new TrainingBatch(latents, noise, t, features, [false, dropSecond], [Caption, "a red square"]);
    }

    (StableDiffusionModel Sd, EllaConnector Connector) Models()
    {
        var sd = StableDiffusionModel.Load(_world.Folder, ScalarType.Float32, CPU, withTextEncoder: true);
        // The tiny random UNet barely reads its condition (predictions from two conditions differ by ~1e-6); scaling its
        // cross-attention values makes the condition matter as in a trained model.
        using (no_grad())
            foreach (var (name, p) in sd.Unet.named_parameters())
                if (name.Contains("attn2.to_v.")) p.mul_(30);
        var connector = (EllaConnector)Connectors.FromPretrained(_world.Connector);
        return (sd, connector);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_loss_is_the_objective_plus_w_times_the_mse_to_the_teachers_prediction(bool dropSecond)
    {
        var (sd, connector) = Models();
        using var sdScope = sd;
        using var connectorScope = connector;
        using var batch = Batch(dropSecond);
        using var nullFeatures = randn([3, 384], generator: new Generator(9));
        var objective = DiffusionObjective.FromConfig(sd.SchedulerConfig, null);
        const double w = 0.7;
        using var plain = new ConnectorTrainer(sd.Unet, connector, objective, nullFeatures, new OptimizerSettings());
        using var taught = new ConnectorTrainer(sd.Unet, connector, objective, nullFeatures, new OptimizerSettings())
        {
            Teacher = new ClipTeacher(sd.TextEncoder!, sd.Tokenizer!, w),
        };
        using var scope = NewDisposeScope();
        double objectiveLoss = plain.Loss(batch).item<float>();
        double total = taught.Loss(batch).item<float>();

        // By hand: the student's prediction and the teacher's, from the CLIP ids of each row's caption ("" when dropped).
        var noisy = objective.AddNoise(batch.Latents, batch.Noise, batch.Timesteps);
        using var noGrad = no_grad();
        var rowFeatures = new[] { batch.TextFeatures[0].unsqueeze(0), dropSecond ? nullFeatures.unsqueeze(0) : batch.TextFeatures[1].unsqueeze(0) };
        var cond = cat(rowFeatures.Select((f, r) => connector.forward(f, batch.Timesteps[r..(r + 1)])).ToArray(), 0);
        var student = sd.Unet.forward(noisy, batch.Timesteps, cond);
        string[] teacherCaptions = [Caption, dropSecond ? "" : "a red square"];
        var ids = tensor(teacherCaptions.SelectMany(c => sd.Tokenizer!.Encode(c, 77).Ids.Select(i => (long)i)).ToArray()).reshape(2, 77);
        var teacher = sd.Unet.forward(noisy, batch.Timesteps, sd.TextEncoder!.forward(ids));
        double mse = (student - teacher).square().mean().item<float>();
        Assert.True(mse > 1e-4, $"the teacher's and the student's predictions should differ before training (mse {mse})");
        Assert.Equal(objectiveLoss + w * mse, total, 1e-5);
    }

    [Fact]
    public void A_rewriting_teacher_reads_each_caption_as_rewritten()
    {
        var (sd, connector) = Models();
        using var sdScope = sd;
        using var connectorScope = connector;
        using var _ = no_grad();
        var rewriting = new ClipTeacher(sd.TextEncoder!, sd.Tokenizer!, 1) { Rewrite = Ella.World.Language.CaptionSynonyms.Canonical };
        var plain = new ClipTeacher(sd.TextEncoder!, sd.Tokenizer!, 1);
        using var fromSynonyms = rewriting.Condition(["a petite ruby dot above a navy tile", "a cone"], [false, true], CPU);
        using var fromWords = plain.Condition(["a small red circle above a blue square", ""], [false, false], CPU);
        TensorAssert.Close(fromWords, fromSynonyms, "teacher condition", 0);
        using var unread = plain.Condition(["a petite ruby dot above a navy tile"], [false], CPU);
        Assert.True((unread - fromWords[0..1]).abs().max().item<float>() > 1e-3, "the plain teacher should read the synonyms as other words");
    }

    [Fact]
    public void Steps_with_a_teacher_bring_the_connectors_prediction_towards_the_teachers()
    {
        var (sd, connector) = Models();
        using var sdScope = sd;
        using var connectorScope = connector;
        using var batch = Batch(dropSecond: false);
        using var nullFeatures = randn([3, 384], generator: new Generator(9));
        var objective = DiffusionObjective.FromConfig(sd.SchedulerConfig, null);
        using var trainer = new ConnectorTrainer(sd.Unet, connector, objective, nullFeatures, new OptimizerSettings(Lr: 3e-3))
        {
            Teacher = new ClipTeacher(sd.TextEncoder!, sd.Tokenizer!, 10),
        };
        var first = trainer.Step([batch], 3e-3);
        StepResult last = first;
        for (int i = 0; i < 15; i++) last = trainer.Step([batch], 3e-3);
        Assert.NotNull(first.Distill);
        Assert.True(last.Distill < 0.5 * first.Distill, $"distillation MSE {first.Distill} → {last.Distill}");
    }

    string Cache()
    {
        string data = TinyTrainingFiles.Captions(_dir, ("c.png", TestImages.Png(24, 24), Caption));
        string cache = Path.Combine(_dir, "cache");
        var r = CliRunner.Run("train", "cache", "--sd", _world.Folder, "--text-encoder", "minilm", "--data", data, "--output", cache, "--resolution", "32");
        Assert.True(r.ExitCode == 0, r.Error);
        return cache;
    }

    [Fact]
    public void Train_with_distill_logs_the_term_at_every_step()
    {
        string output = Path.Combine(_dir, "run");
        var r = CliRunner.Run("train", "--sd", _world.Folder, "--cache", Cache(), "--output", output, "--max-steps", "2", "--batch", "2",
            "--resolution", "32", "--blocks", "1", "--distill", "0.5");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("distillation: loss = objective + 0.5 × MSE", r.Error);
        Assert.Contains("(distill ", r.Error);
        var lines = File.ReadAllLines(Path.Combine(output, "log.jsonl"));
        Assert.Equal(2, lines.Length);
        foreach (var line in lines)
        {
            using var entry = JsonDocument.Parse(line);
            double distill = entry.RootElement.GetProperty("distill").GetDouble();
            Assert.True(double.IsFinite(distill) && distill > 0, line);
            Assert.True(entry.RootElement.GetProperty("loss").GetDouble() > 0.5 * distill, line);
        }
    }

    [Fact]
    public void Train_without_distill_logs_no_distill_term()
    {
        string output = Path.Combine(_dir, "plain");
        var r = CliRunner.Run("train", "--sd", _world.Folder, "--cache", Cache(), "--output", output, "--max-steps", "1", "--batch", "2",
            "--resolution", "32", "--blocks", "1");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.DoesNotContain("distill", File.ReadAllText(Path.Combine(output, "log.jsonl")));
    }

    [Fact]
    public void A_resumed_run_keeps_its_distillation_weight_and_refuses_another()
    {
        string cache = Cache(), output = Path.Combine(_dir, "resumable");
        string[] Args(int steps, params string[] extra) =>
            ["train", "--sd", _world.Folder, "--cache", cache, "--max-steps", steps.ToString(), "--batch", "2", "--resolution", "32", "--blocks", "1",
             "--save-every", "1", .. extra];
        var first = CliRunner.Run(Args(1, "--output", output, "--distill", "0.5"));
        Assert.True(first.ExitCode == 0, first.Error);
        var other = CliRunner.Run(Args(2, "--resume", output, "--distill", "2"));
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("--distill 2: the run in", other.Error);
        Assert.Contains("--distill 0.5", other.Error);
        var resumed = CliRunner.Run(Args(2, "--resume", output));
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Contains("resuming with --distill 0.5", resumed.Error);
        var lines = File.ReadAllLines(Path.Combine(output, "log.jsonl"));
        Assert.Equal(2, lines.Length);
        using var second = JsonDocument.Parse(lines[1]);
        Assert.True(second.RootElement.GetProperty("distill").GetDouble() > 0, lines[1]);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("NaN")]
    public void A_negative_or_non_finite_distill_is_refused(string value)
    {
        var r = CliRunner.Run("train", "--sd", _world.Folder, "--cache", Path.Combine(_dir, "none"), "--output", Path.Combine(_dir, "o"), "--distill", value);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--distill", r.Error);
    }

    [Fact]
    public void Distill_needs_a_model_with_its_own_clip()
    {
        string cache = Cache();
        Directory.Delete(Path.Combine(_world.Folder, "text_encoder"), true);
        var r = CliRunner.Run("train", "--sd", _world.Folder, "--cache", cache, "--output", Path.Combine(_dir, "o"), "--resolution", "32",
            "--blocks", "1", "--distill", "1");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--distill 1: the teacher is the model's own CLIP text encoder", r.Error);
        Assert.DoesNotContain("   at ", r.Error);
    }
}
