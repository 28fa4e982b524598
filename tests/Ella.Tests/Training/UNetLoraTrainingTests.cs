using System.Text.Json;
using Ella.Lora;
using Ella.Modules.UNet;
using Ella.Tests.Infrastructure;
using Ella.Tests.Training.Data;
using Ella.Training.UNetLora;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Training;

/// <summary>
/// <c>ella train --target unet-lora</c> on the tiny pipeline fixture: the connector is frozen, the LoRA is written in the
/// kohya layout that <c>--lora</c> merges, a merged LoRA computes what the training hooks computed, and a resumed run
/// ends exactly where an uninterrupted one does.
/// </summary>
public sealed class UNetLoraTrainingTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"ella-train-lora-{Guid.NewGuid():N}");
    public UNetLoraTrainingTests() => Directory.CreateDirectory(_dir);
    public void Dispose() => Directory.Delete(_dir, true);

    static string Sd => Fixtures.PathOf("diffusion", "pipeline", "model");

    string T5() => TinyTrainingFiles.T5(_dir);

    string Data() => TinyTrainingFiles.Captions(_dir);

    /// <summary>A connector trained for one step: what the LoRA runs learn with.</summary>
    string Connector()
    {
        string run = Path.Combine(_dir, "connector");
        string file = Path.Combine(run, "connector.safetensors");
        if (File.Exists(file)) return file;
        var r = CliRunner.Run("train", "--sd", Sd, "--t5", T5(), "--data", Data(), "--output", run, "--max-steps", "1", "--resolution", "64", "--blocks", "1");
        Assert.True(r.ExitCode == 0, r.Error);
        return file;
    }

    string[] Lora(string output, int steps) =>
        ["train", "--target", "unet-lora", "--rank", "2", "--lora-alpha", "4", "--init", Connector(), "--sd", Sd, "--t5", T5(), "--data", Data(),
         "--output", output, "--max-steps", steps.ToString(), "--batch", "2", "--resolution", "64", "--seed", "3", "--lr", "1e-2", "--save-every", "10"];

    [Fact]
    public void A_trained_lora_is_a_kohya_file_that_merges_to_what_training_computed()
    {
        string connector = Connector();
        byte[] connectorBefore = File.ReadAllBytes(connector);
        string output = Path.Combine(_dir, "lora");
        var r = CliRunner.Run(Lora(output, 3));
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("rank-2 UNet LoRA", r.Error);
        Assert.Contains("step 3/3", r.Error);
        string file = Path.Combine(output, "lora.safetensors");
        Assert.True(File.Exists(Path.Combine(output, "checkpoint-3", "lora.safetensors")));
        Assert.False(File.Exists(Path.Combine(output, "connector.safetensors")));
        Assert.Equal(connectorBefore, File.ReadAllBytes(connector));
        using (var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(output, "checkpoint-3", "state.json"))))
            Assert.Equal("unet-lora", state.RootElement.GetProperty("target").GetString());

        using var unet = UNet2DConditionModel.FromPretrained(Path.Combine(Sd, "unet"));
        int projections = unet.named_modules().Count(m => m.name.Contains("attentions.") && UNetLoraAdapter.TargetNames.Any(t => m.name.EndsWith("." + t)));
        Assert.True(projections > 0);
        using (var f = SafetensorsFile.Open(file))
        {
            Assert.Equal(3 * projections, f.Names.Count());
            Assert.All(f.Names, n => Assert.StartsWith("lora_unet_", n));
            Assert.Equal("2", f.Metadata["ss_network_dim"]);
            using var up = f.Read(f.Names.First(n => n.EndsWith(".lora_up.weight")));
            Assert.True(up.abs().max().item<float>() > 0, "lora_up is still zero: nothing was trained");
        }

        // The hooks of training and the merged weights of --lora compute the same UNet.
        manual_seed(1);
        using var x = randn(2, unet.Config.InChannels, 8, 8);
        using var t = tensor(new long[] { 10, 500 });
        using var c = randn(2, 5, unet.Config.CrossAttentionDim);
        Tensor hooked, merged;
        using (no_grad())
        using (var adapter = new UNetLoraAdapter(unet, 2, 4, new Generator(0)))
        {
            adapter.Load(file);
            hooked = unet.forward(x, t, c);
        }
        using (no_grad())
        using (var patcher = new LoraPatcher(unet, null))
        {
            var warnings = new List<string>();
            Assert.True(patcher.Use([new LoraSpec(file)], warnings));
            Assert.Empty(warnings);
            merged = unet.forward(x, t, c);
            patcher.Use([]);
        }
        using var plain = unet.forward(x, t, c);
        double diff = (hooked - merged).abs().max().item<float>(), effect = (hooked - plain).abs().max().item<float>();
        Assert.True(effect > 1e-4, $"the LoRA changes nothing ({effect})");
        Assert.True(diff < 1e-5, $"merged LoRA differs from the training hooks by {diff} (the LoRA's own effect: {effect})");

        // And ella generate reads it.
        string png = Path.Combine(_dir, "out.png");
        var g = CliRunner.Run("generate", "--sd", Sd, "--t5", T5(), "--ella", connector, "--lora", file + ":1", "--prompt", "a red square", "--steps", "2",
            "--width", "64", "--height", "64", "--dtype", "fp32", "-o", png);
        Assert.True(g.ExitCode == 0, g.Error);
        Assert.DoesNotContain("match no module", g.Error);
    }

    [Fact]
    public void Three_steps_equal_two_plus_resume_plus_one()
    {
        string straight = Path.Combine(_dir, "straight"), resumed = Path.Combine(_dir, "resumed");
        var a = CliRunner.Run(Lora(straight, 3));
        Assert.True(a.ExitCode == 0, a.Error);
        var b1 = CliRunner.Run(Lora(resumed, 2));
        Assert.True(b1.ExitCode == 0, b1.Error);
        // --resume alone: the run's target and connector come from its checkpoint.
        var b2 = CliRunner.Run("train", "--resume", resumed, "--sd", Sd, "--t5", T5(), "--data", Data(), "--max-steps", "3", "--batch", "2",
            "--resolution", "64", "--seed", "3", "--lr", "1e-2", "--rank", "2", "--lora-alpha", "4", "--save-every", "10");
        Assert.True(b2.ExitCode == 0, b2.Error);
        Assert.Contains("resumed from", b2.Error);
        using var fa = SafetensorsFile.Open(Path.Combine(straight, "lora.safetensors"));
        using var fb = SafetensorsFile.Open(Path.Combine(resumed, "lora.safetensors"));
        Assert.Equal(fa.Names, fb.Names);
        foreach (var name in fa.Names)
        {
            using var x = fa.Read(name);
            using var y = fb.Read(name);
            Assert.True(x.eq(y).all().item<bool>(), $"{name} differs after resume");
        }
    }

    [Fact]
    public void A_lora_run_without_a_connector_or_with_a_bad_rank_exits_2()
    {
        string output = Path.Combine(_dir, "bad");
        var noInit = CliRunner.Run("train", "--target", "unet-lora", "--sd", Sd, "--t5", T5(), "--data", Data(), "--output", output, "--max-steps", "1");
        Assert.Equal(2, noInit.ExitCode);
        Assert.Contains("--init", noInit.Error);
        var args = Lora(output, 1).ToList();
        args[args.IndexOf("--rank") + 1] = "0";
        var rank = CliRunner.Run([.. args]);
        Assert.Equal(2, rank.ExitCode);
        Assert.Contains("--rank", rank.Error);
    }
}
