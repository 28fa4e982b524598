using Ella.Modules.Ella;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using Ella.World.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.World;

/// <summary><c>ella world train</c> at tiny sizes: the folder it writes, provenance, and exact resumption of a stage.</summary>
public sealed class WorldTrainTests : IDisposable
{
    readonly string _dir = Path.Combine(Path.GetTempPath(), $"ella-world-train-{Guid.NewGuid():N}");
    public void Dispose() { try { Directory.Delete(_dir, true); } catch (IOException) { } }

    static string ClipVocabulary => Path.Combine(Fixtures.SharedData, "clip");

    [Fact]
    public void Tiny_recipe_writes_a_loadable_world_with_provenance()
    {
        string model = Path.Combine(_dir, "model");
        var r = CliRunner.Run("world", "train", "--size", "tiny", "--vae-steps", "2", "--base-steps", "2", "--connector-steps", "2",
            "--connector-samples", "8", "--batch", "2", "--connectors", "tsc,mlp", "--clip-tokenizer", ClipVocabulary,
            "--work", Path.Combine(_dir, "work"), "--out", model, "--seed", "3");
        Assert.True(r.ExitCode == 0, r.Error);
        foreach (var f in new[] { "model_index.json", "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                     "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt", "scheduler/scheduler_config.json",
                     "ella/connector.safetensors", "ablations/mlp.safetensors" })
            Assert.True(File.Exists(Path.Combine(model, f)), f);
        foreach (var f in new[] { "vae/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "ella/connector.safetensors" })
        {
            using var file = SafetensorsFile.Open(Path.Combine(model, f));
            Assert.Contains("world train", file.Metadata["produced_by"]);
            Assert.Equal("3", file.Metadata["seed"]);
            Assert.True(file.Metadata.ContainsKey("commit") && file.Metadata.ContainsKey("steps"), f);
            // bf16 throughout, except the connector's timestep embedding, which EllaSharp keeps in float32.
            Assert.All(file.Names.Where(n => !n.StartsWith("time_embedding.")), n => Assert.Equal("BF16", file.GetInfo(n).DType));
        }
        Assert.Equal("minilm", ConnectorMetadata.TextEncoder(Path.Combine(model, "ella", "connector.safetensors")));
        Assert.Equal("mlp", Connectors.FromPretrained(Path.Combine(model, "ablations", "mlp.safetensors")).Config.ConnectorType);
        // The pipeline loads what the recipe wrote and draws with it.
        string png = Path.Combine(_dir, "out.png");
        var g = CliRunner.Run("generate", "--sd", model, "--ella", Path.Combine(model, "ella", "connector.safetensors"), "--prompt", "a red circle",
            "--steps", "2", "--dtype", "fp32", "-o", png);
        Assert.True(g.ExitCode == 0, g.Error);
        Assert.True(File.Exists(png));
        // A second run finds every stage done and only rewrites the folder.
        var again = CliRunner.Run("world", "train", "--size", "tiny", "--vae-steps", "2", "--base-steps", "2", "--connector-steps", "2",
            "--connector-samples", "8", "--batch", "2", "--connectors", "tsc", "--clip-tokenizer", ClipVocabulary,
            "--work", Path.Combine(_dir, "work"), "--out", model, "--seed", "3");
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.DoesNotContain("step 1/", again.Error);

        // --base: stage 3 alone against that model, into another folder that gets a copy of the base first.
        string other = Path.Combine(_dir, "other");
        var connectorsOnly = CliRunner.Run("world", "train", "--base", model, "--out", other, "--connectors", "resampler", "--connector-steps", "2",
            "--connector-lr", "0.002", "--connector-distill", "0.5", "--connector-dtype", "bf16", "--connector-synonyms", "--connector-samples", "8", "--batch", "2", "--clip-tokenizer", ClipVocabulary, "--work", Path.Combine(_dir, "work-base"), "--seed", "3");
        Assert.True(connectorsOnly.ExitCode == 0, connectorsOnly.Error);
        Assert.DoesNotContain(connectorsOnly.Error.Split('\n'), l => (l.StartsWith("[vae]") || l.StartsWith("[base]")) && l.Contains("parameters; steps"));
        Assert.Contains(connectorsOnly.Error.Split('\n'), l => l.StartsWith("[resampler]") && l.Contains("parameters"));
        foreach (var f in new[] { "vae/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors", "model_index.json" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(model, f)), File.ReadAllBytes(Path.Combine(other, f)));
        Assert.Equal("resampler", Connectors.FromPretrained(Path.Combine(other, "ablations", "resampler.safetensors")).Config.ConnectorType);
        Assert.False(Directory.Exists(Path.Combine(other, "ella")));
        // --connector-lr sets the peak of the connector's schedule (the default is 3e-4).
        var lrs = File.ReadLines(Path.Combine(_dir, "work-base", "3-connector-resampler", "log.jsonl"))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).Where(e => e.TryGetProperty("lr", out _)).Select(e => e.GetProperty("lr").GetDouble()).ToList();
        Assert.NotEmpty(lrs);
        Assert.InRange(lrs.Max(), 0.001, 0.002);
        // --connector-distill adds the base's CLIP as a teacher (its term is logged); --connector-dtype runs stage 3 in bf16.
        Assert.Contains(connectorsOnly.Error.Split('\n'), l => l.StartsWith("[resampler] distillation: loss = objective + 0.5 × MSE"));
        Assert.All(File.ReadLines(Path.Combine(_dir, "work-base", "3-connector-resampler", "log.jsonl")),
            l => Assert.True(System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("distill").GetDouble() > 0, l));
        Assert.Contains(connectorsOnly.Error.Split('\n'), l => l.StartsWith("[resampler] training") && l.Contains("in bf16"));
        // --connector-synonyms: the connector's captions are the same scenes' captions reworded, in folders of their own.
        var reworded = File.ReadLines(Path.Combine(_dir, "work-base", "3-data-synonyms", "metadata.jsonl"))
            .Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("text").GetString()!).ToList();
        var plain = Ella.World.Splits.WorldFiles.Items(Ella.World.Splits.WorldSplit.Train, WorldRecipe.ConnectorDataStart, 8, 3).Select(i => i.DenseCaption).ToList();
        Assert.Equal(plain, reworded.Select(Ella.World.Language.CaptionSynonyms.Canonical));
        Assert.NotEqual(plain, reworded);
        Assert.True(Directory.Exists(Path.Combine(_dir, "work-base", "3-cache-minilm-synonyms")));
        Assert.False(Directory.Exists(Path.Combine(_dir, "work-base", "3-data")));
    }

    [Fact]
    public void Width_sets_the_base_clip_the_unets_cross_attention_and_the_connector_together_and_the_beta_schedule_reaches_the_scheduler()
    {
        string model = Path.Combine(_dir, "model");
        var r = CliRunner.Run("world", "train", "--size", "tiny", "--width", "64", "--beta-schedule", "squaredcos_cap_v2", "--vae-steps", "1", "--base-steps", "1", "--connector-steps", "1",
            "--connector-samples", "4", "--batch", "2", "--clip-tokenizer", ClipVocabulary, "--work", Path.Combine(_dir, "work"), "--out", model);
        Assert.True(r.ExitCode == 0, r.Error);
        using (var clip = SafetensorsFile.Open(Path.Combine(model, "text_encoder", "model.safetensors")))
            Assert.Equal(new long[] { 49408, 64 }, clip.GetInfo("text_model.embeddings.token_embedding.weight").Shape);
        var unet = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "unet", "config.json"))).RootElement;
        Assert.Equal(64, unet.GetProperty("cross_attention_dim").GetInt32());
        var connector = Connectors.FromPretrained(Path.Combine(model, "ella", "connector.safetensors")).Config;
        Assert.Equal(64, connector.ConditionWidth);
        var scheduler = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "scheduler", "scheduler_config.json"))).RootElement;
        Assert.Equal("squaredcos_cap_v2", scheduler.GetProperty("beta_schedule").GetString());
    }

    [Fact]
    public void Clip_max_length_sets_the_base_clips_context_and_its_tokenizers_and_the_world_still_generates_in_both_modes()
    {
        string model = Path.Combine(_dir, "model");
        var r = CliRunner.Run("world", "train", "--size", "tiny", "--clip-max-length", "24", "--vae-steps", "1", "--base-steps", "1", "--connector-steps", "1",
            "--connector-samples", "4", "--batch", "2", "--clip-tokenizer", ClipVocabulary, "--work", Path.Combine(_dir, "work"), "--out", model);
        Assert.True(r.ExitCode == 0, r.Error);
        var clip = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "text_encoder", "config.json"))).RootElement;
        Assert.Equal(24, clip.GetProperty("max_position_embeddings").GetInt32());
        using (var weights = SafetensorsFile.Open(Path.Combine(model, "text_encoder", "model.safetensors")))
            Assert.Equal(24, weights.GetInfo("text_model.embeddings.position_embedding.weight").Shape[0]);
        var tokenizer = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(model, "tokenizer", "tokenizer_config.json"))).RootElement;
        Assert.Equal(24, tokenizer.GetProperty("model_max_length").GetInt32());
        Assert.Equal("<|endoftext|>", tokenizer.GetProperty("pad_token").GetString());
        foreach (var mode in new[] { "clip", "ella" })
        {
            string png = Path.Combine(_dir, $"{mode}.png");
            var g = CliRunner.Run("generate", "--sd", model, "--ella", Path.Combine(model, "ella", "connector.safetensors"), "--mode", mode, "--prompt", "a large red circle to the left of a small blue square on a white background and two green triangles above it",
                "--steps", "2", "--width", "64", "--height", "64", "-o", png);
            Assert.True(g.ExitCode == 0, g.Error);
            Assert.True(File.Exists(png));
        }
    }

    [Theory]
    [InlineData("--vae-steps", "3")]
    [InlineData("--token-embedding-std", "1.0")]
    [InlineData("--dtype", "bf16")]
    [InlineData("--width", "64")]
    [InlineData("--clip-max-length", "24")]
    [InlineData("--vae-latent-preview", "1")]
    [InlineData("--beta-schedule", "squaredcos_cap_v2")]
    public void Stage_1_and_2_flags_with_base_exit_2_naming_them(string flag, string value)
    {
        var r = CliRunner.Run("world", "train", "--base", "models/shapes-world", "--work", Path.Combine(_dir, "work"), "--out", Path.Combine(_dir, "model"), flag, value);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(flag, r.Error);
        Assert.Contains("--base", r.Error);
        Assert.False(Directory.Exists(Path.Combine(_dir, "model")));
    }

    [Fact]
    public void A_stage_interrupted_and_resumed_ends_with_the_same_weights()
    {
        var settings = new StageSettings(MaxSteps: 6, Batch: 4, Lr: 1e-2, WarmupSteps: 2, SaveEvery: 2, Seed: 5);
        Tensor Train(string dir, int? stopAfter)
        {
            manual_seed(11);
            using var module = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1));
            var loop = new StageLoop(dir, "test", settings, TextWriter.Null);
            using var cancel = new CancellationTokenSource();
            Tensor Loss(int step, Generator rng)
            {
                if (stopAfter == step) cancel.Cancel();
                var x = randn([settings.Batch, 3], generator: rng);
                return (module.forward(x) - x.sum(1, keepdim: true)).pow(2).mean();
            }
            try { loop.Run([new TrainableModule("m", module)], Loss, cancel.Token); }
            catch (OperationCanceledException) { return empty(0); }
            return cat(module.parameters().Select(p => p.detach().flatten()).ToArray()).clone();
        }
        using var straight = Train(Path.Combine(_dir, "a"), null);
        using var interrupted = Train(Path.Combine(_dir, "b"), 3);
        Assert.Equal(0, interrupted.numel());
        Assert.Contains(Directory.GetDirectories(Path.Combine(_dir, "b")), d => d.EndsWith("checkpoint-2"));
        using var resumed = Train(Path.Combine(_dir, "b"), null);
        Assert.Equal(straight.shape, resumed.shape);
        Assert.True((straight - resumed).abs().max().item<float>() == 0, "resumed weights differ from an uninterrupted run");
        Assert.True(StageLoop.IsDone(Path.Combine(_dir, "b")));
        Assert.Equal(6, File.ReadAllLines(Path.Combine(_dir, "b", "log.jsonl")).Length);
    }

    [Fact]
    public void The_latent_preview_reads_the_latent_in_units_of_its_std_and_pulls_two_colours_apart()
    {
        manual_seed(3);
        using var preview = new LatentPreview(4, 1.0);
        // Left half red, right half green (in [-1, 1]); a 4-channel latent on a 4×4 grid.
        var image = zeros(1, 3, 16, 16);
        image[0, 0, .., ..8] = 0.8; image[0, 1, .., ..8] = -0.76; image[0, 0, .., 8..] = -0.76; image[0, 1, .., 8..] = 0.3;
        var latent = randn(1, 4, 4, 4);
        using (no_grad())
            Assert.Equal(preview.Loss(latent, image).item<float>(), preview.Loss(latent * 10, image).item<float>(), 4);
        // The gradient on the latent points to a larger red–green gap: moving along it lowers the loss.
        var z = latent.clone().requires_grad_(true);
        preview.Loss(z, image).backward();
        Assert.True(z.grad is not null && z.grad.abs().sum().item<float>() > 0);
        using (no_grad())
            Assert.True(preview.Loss(z - 0.1 * z.grad!, image).item<float>() < preview.Loss(latent, image).item<float>());
        Assert.Throws<ArgumentOutOfRangeException>(() => new LatentPreview(4, 0));
    }

    [Fact]
    public void A_tiny_recipe_with_the_latent_preview_checkpoints_the_map_beside_the_vae()
    {
        var r = CliRunner.Run("world", "train", "--size", "tiny", "--vae-latent-preview", "1", "--vae-steps", "2", "--base-steps", "1", "--connector-steps", "1",
            "--connector-samples", "4", "--batch", "2", "--clip-tokenizer", ClipVocabulary, "--work", Path.Combine(_dir, "work"), "--out", Path.Combine(_dir, "model"));
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("latent preview regulariser, weight 1", r.Error);
        var checkpoint = Directory.GetDirectories(Path.Combine(_dir, "work", "1-vae"), "checkpoint-*").Single();
        Assert.Contains(Directory.GetFiles(checkpoint), f => Path.GetFileName(f).StartsWith("vae-preview"));
        Assert.True(File.Exists(Path.Combine(_dir, "model", "vae", "diffusion_pytorch_model.safetensors")));
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Fact]
    public void A_low_precision_copy_computes_with_the_masters_weights_and_returns_float32_gradients()
    {
        manual_seed(2);
        using var master = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3));
        using var copy = new LowPrecisionCopy(master, nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)), ScalarType.BFloat16);
        copy.PullWeights();
        var masters = master.parameters().ToList();
        var copies = copy.Copy.parameters().ToList();
        for (int i = 0; i < masters.Count; i++)
        {
            Assert.Equal(ScalarType.BFloat16, copies[i].dtype);
            Assert.True(Same(copies[i].to(ScalarType.Float32), masters[i].to(ScalarType.BFloat16).to(ScalarType.Float32)), $"parameter {i}");
        }
        using var x = randn(4, 5);
        // The reference: the same bf16 computation on the copy, its gradients read directly.
        ((nn.Module<Tensor, Tensor>)copy.Copy).forward(x.to(ScalarType.BFloat16)).to(ScalarType.Float32).pow(2).mean().backward();
        var expected = copies.Select(c => c.grad!.to(ScalarType.Float32).clone()).ToList();
        copy.PushGradients();
        for (int i = 0; i < masters.Count; i++)
        {
            Assert.Equal(ScalarType.Float32, masters[i].grad!.dtype);
            Assert.True(Same(masters[i].grad!, expected[i]), $"gradient {i}");
            Assert.Null(copies[i].grad);
        }
        // A second pull after an update of the master carries the update over.
        using (no_grad()) masters[0].add_(1.0);
        copy.PullWeights();
        Assert.True(Same(copies[0].to(ScalarType.Float32), masters[0].to(ScalarType.BFloat16).to(ScalarType.Float32)));
    }

    [Fact]
    public void A_mixed_precision_stage_learns_and_resumes_exactly()
    {
        var settings = new StageSettings(MaxSteps: 30, Batch: 16, Lr: 3e-2, WarmupSteps: 1, SaveEvery: 10, Seed: 5);
        (Tensor Weights, double First, double Last) Train(string dir, int? stopAfter)
        {
            manual_seed(11);
            using var module = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1));
            manual_seed(12);
            using var compute = new LowPrecisionCopy(module, nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)), ScalarType.BFloat16);
            var loop = new StageLoop(dir, "test", settings, TextWriter.Null);
            using var cancel = new CancellationTokenSource();
            Tensor Loss(int step, Generator rng)
            {
                if (stopAfter == step) cancel.Cancel();
                var x = randn([settings.Batch, 3], generator: rng);
                return (((nn.Module<Tensor, Tensor>)compute.Copy).forward(x.to(ScalarType.BFloat16)).to(ScalarType.Float32) - x.sum(1, keepdim: true)).pow(2).mean();
            }
            try { loop.Run([new TrainableModule("m", module, compute)], Loss, cancel.Token); }
            catch (OperationCanceledException) { return (empty(0), 0, 0); }
            var losses = File.ReadAllLines(Path.Combine(dir, "log.jsonl")).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToList();
            Assert.All(module.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
            return (cat(module.parameters().Select(p => p.detach().flatten()).ToArray()).clone(), losses.Take(5).Average(), losses.TakeLast(5).Average());
        }
        var straight = Train(Path.Combine(_dir, "a"), null);
        Assert.True(straight.Last < straight.First, $"loss {straight.First} → {straight.Last}");
        Assert.Equal(0, Train(Path.Combine(_dir, "b"), 13).Weights.numel());
        var resumed = Train(Path.Combine(_dir, "b"), null);
        Assert.True(Same(straight.Weights, resumed.Weights), "resumed weights differ from an uninterrupted run");
    }

    [Theory]
    [InlineData("--dtype", "fp16")]
    [InlineData("--unet-layers", "0")]
    [InlineData("--width", "48")]
    [InlineData("--width", "0")]
    [InlineData("--clip-max-length", "4")]
    [InlineData("--clip-max-length", "78")]
    [InlineData("--vae-latent-preview", "-1")]
    [InlineData("--beta-schedule", "scaled_linear")]
    [InlineData("--connectors", "gru")]
    [InlineData("--vae-steps", "0")]
    [InlineData("--vae-channels", "16,32")]
    [InlineData("--size", "huge")]
    [InlineData("--clip-tokenizer", "/nonexistent/clip")]
    [InlineData("--base", "/nonexistent/world")]
    [InlineData("--connector-lr", "0")]
    [InlineData("--connector-lr", "2")]
    [InlineData("--connector-distill", "-0.5")]
    [InlineData("--connector-dtype", "fp16")]
    public void Bad_flags_exit_2_naming_the_flag(string flag, string value)
    {
        var r = CliRunner.Run("world", "train", "--work", Path.Combine(_dir, "work"), "--out", Path.Combine(_dir, "model"), flag, value);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(flag, r.Error);
        Assert.False(Directory.Exists(Path.Combine(_dir, "model")));
    }
}
