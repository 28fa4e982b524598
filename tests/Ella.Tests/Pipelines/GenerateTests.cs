using System.Text.Json;
using Ella.Configs;
using Ella.Imaging;
using Ella.Modules.Ella;
using Ella.Modules.T5;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using Ella.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Pipelines;

public sealed class GenerateTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-gen-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    static string PipelineDir => Fixtures.PathOf("diffusion", "pipeline");

    public static IEnumerable<object[]> Runs()
    {
        using var doc = Fixtures.Json("diffusion", "pipeline", "runs.json");
        foreach (var r in doc.RootElement.GetProperty("runs").EnumerateArray()) yield return [r.GetProperty("name").GetString()!];
    }

    /// <summary>`ella generate` on the fixture model folder reproduces the reference image within 2/255.</summary>
    [Theory]
    [MemberData(nameof(Runs))]
    public void Cli_generate_reproduces_the_reference_image(string name)
    {
        using var doc = Fixtures.Json("diffusion", "pipeline", "runs.json");
        var run = doc.RootElement.GetProperty("runs").EnumerateArray().First(r => r.GetProperty("name").GetString() == name);
        string model = Path.Combine(PipelineDir, doc.RootElement.GetProperty("model_dir").GetString()!);
        string runFile = Path.Combine(PipelineDir, run.GetProperty("file").GetString()!);
        var reference = Fixtures.Load(runFile)["image"];
        string output = Path.Combine(_dir, name + ".png");
        bool fixedLength = run.GetProperty("flexible_max_length_workaround").ValueKind != JsonValueKind.Array;
        var r = CliRunner.Run("generate", "--dtype", "fp32", "--sd", model, "--ella", Path.Combine(model, "ella.safetensors"), "--prompt-embeds", runFile,
            "--steps", run.GetProperty("num_inference_steps").GetInt32().ToString(), "--guidance", run.GetProperty("guidance_scale").GetDouble().ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--seed", run.GetProperty("seed").GetInt64().ToString(), "--width", reference.shape[3].ToString(), "--height", reference.shape[2].ToString(),
            "--token-length", fixedLength ? "fixed" : "flexible", "-o", output);
        Assert.True(r.ExitCode == 0, r.Error);
        var image = RgbImage.Load(output);
        using var ours = image.ToTensor();
        double maxErr = (ours - reference[0]).abs().max().item<float>() * 255;
        Assert.True(maxErr <= 2.0 + 1e-3, $"max pixel error {maxErr:F2}/255");
        var text = PngText.Read(File.ReadAllBytes(output));
        Assert.Contains($"Seed: {run.GetProperty("seed").GetInt64()}", text["parameters"]);
        Assert.Contains("Sampler: DPM++ 2M", text["parameters"]);
    }

    /// <summary>Builds a T5 folder from the tiny T5 fixture and its tokenizer, and an ELLA connector that reads its features.</summary>
    (string T5, string Ella) TinyTextModels()
    {
        string t5 = Path.Combine(_dir, "t5");
        Directory.CreateDirectory(t5);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.PathOf("text", "t5", f), Path.Combine(t5, f));
        foreach (var f in new[] { "spiece.model", "tokenizer_config.json", "special_tokens_map.json" }) File.Copy(Fixtures.PathOf("text", "t5-tokenizer", f), Path.Combine(t5, f));
        string ella = Path.Combine(_dir, "ella64.safetensors");
        manual_seed(7);
        using var connector = new EllaConnector(new EllaConnectorConfig { TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 2, Heads = 4, NumLatents = 8, InputDim = 64 });
        connector.Save(ella);
        return (t5, ella);
    }

    [Theory]
    [InlineData("flexible")]
    [InlineData("fixed")]
    public void From_text_equals_the_loop_on_t5_features(string length)
    {
        var (t5Dir, ellaFile) = TinyTextModels();
        string model = Path.Combine(PipelineDir, "model");
        using var pipeline = EllaPipeline.Load(new PipelineLoadOptions { StableDiffusion = model, T5 = t5Dir, Ella = ellaFile });
        var mode = length == "fixed" ? TokenLength.Fixed : TokenLength.Flexible;
        const string prompt = "A rustic wooden desk with a silver flute and vintage glass bottles.";
        var request = new GenerationRequest { Prompts = [prompt], Steps = 4, Width = 64, Height = 64, Seed = 42, TokenLength = mode, NegativePrompt = "blurry" };
        using var result = pipeline.Generate(request);

        // The same run assembled by hand: T5 features → ELLA conditioners → loop → decode.
        using var _ = inference_mode();
        var tokenizer = T5Tokenizer.FromPretrained(t5Dir);
        using var t5 = T5EncoderModel.FromPretrained(t5Dir);
        Tensor Encode(string text)
        {
            var tok = tokenizer.Encode(text, mode, 128);
            return t5.forward(tensor(tok.Ids.Select(i => (long)i).ToArray()).reshape(1, -1), tensor(tok.AttentionMask.Select(i => (long)i).ToArray()).reshape(1, -1));
        }
        using var connector = EllaConnector.FromPretrained(ellaFile);
        using var cond = new EllaConditioner(connector, [Encode(prompt)], ScalarType.Float32);
        using var uncond = new EllaConditioner(connector, [Encode("blurry")], ScalarType.Float32);
        var scheduler = Ella.Schedulers.SchedulerFactory.Create("dpm++2m", pipeline.StableDiffusion.SchedulerConfig);
        scheduler.SetTimesteps(4);
        var generator = new Generator(42);
        var latents = DenoisingLoop.InitialLatents(1, 4, 8, 8, generator, scheduler.InitNoiseSigma, CPU);
        var final = DenoisingLoop.Run(pipeline.StableDiffusion.Unet, scheduler, latents, cond, uncond, 7.5, generator, ScalarType.Float32);
        var image = DenoisingLoop.Decode(pipeline.StableDiffusion.Vae, final, ScalarType.Float32);
        TensorAssert.Close(image, result.Images, $"from text ({length})", 1e-5);
    }

    [Fact]
    public void Bad_requests_get_one_clear_line_and_exit_code_2()
    {
        string model = Path.Combine(PipelineDir, "model");
        string ella = Path.Combine(model, "ella.safetensors");
        string embeds = Path.Combine(PipelineDir, "run_flex_g7.5.safetensors");
        var cases = new (string[] Args, string Expect)[]
        {
            (["generate", "--sd", model, "--ella", ella, "--prompt-embeds", embeds, "--width", "60", "--height", "64"], "multiples of 8"),
            (["generate", "--sd", model, "--ella", ella, "--prompt-embeds", embeds, "--scheduler", "heun"], "heun"),
            (["generate", "--sd", Path.Combine(_dir, "missing"), "--ella", ella, "--prompt-embeds", embeds], "missing"),
            (["generate", "--sd", _dir, "--ella", ella, "--prompt-embeds", embeds], "unet/"),
            (["generate", "--sd", model, "--ella", NarrowConnector(), "--prompt-embeds", embeds], "cross_attention_dim"),
            (["generate", "--sd", model, "--ella", ella], "prompt"),
        };
        foreach (var (args, expect) in cases)
        {
            var r = CliRunner.Run(args);
            Assert.True(r.ExitCode == 2, $"{string.Join(" ", args)} → exit {r.ExitCode}: {r.Error}");
            Assert.Contains(expect, r.Error);
            Assert.DoesNotContain("   at ", r.Error);
        }
    }

    string NarrowConnector()
    {
        string path = Path.Combine(_dir, "ella-width32.safetensors");
        using var c = new EllaConnector(new EllaConnectorConfig { TimeChannel = 8, TimeEmbedDim = 16, Width = 32, Layers = 1, Heads = 2, NumLatents = 4, InputDim = 40 });
        c.Save(path);
        return path;
    }

    [Fact]
    public void The_denoising_loop_does_not_leak_tensors()
    {
        var (t5Dir, ellaFile) = TinyTextModels();
        using var pipeline = EllaPipeline.Load(new PipelineLoadOptions { StableDiffusion = Path.Combine(PipelineDir, "model"), T5 = t5Dir, Ella = ellaFile });
        var request = new GenerationRequest { Prompts = ["a cat"], Steps = 3, Width = 64, Height = 64, Seed = 1 };
        pipeline.Generate(request).Dispose(); // warm-up
        DisposeScopeManager.Statistics.Reset();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 3; i++) pipeline.Generate(request).Dispose();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}

public sealed class CompareAndClipTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-cmp-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>A tiny SD folder: the pipeline fixture's UNet/VAE/scheduler plus the tiny CLIP text encoder (width 64) and the real CLIP vocabulary.</summary>
    string TinySdWithClip()
    {
        string sd = Path.Combine(_dir, "sd");
        string model = Fixtures.PathOf("diffusion", "pipeline", "model");
        Directory.CreateDirectory(sd);
        foreach (var sub in new[] { "unet", "vae", "scheduler" }) Directory.CreateSymbolicLink(Path.Combine(sd, sub), Path.Combine(model, sub));
        File.Copy(Path.Combine(model, "model_index.json"), Path.Combine(sd, "model_index.json"));
        Directory.CreateSymbolicLink(Path.Combine(sd, "text_encoder"), Fixtures.PathOf("text", "clip-text"));
        Directory.CreateSymbolicLink(Path.Combine(sd, "tokenizer"), Path.Combine(Fixtures.SharedData, "clip"));
        return sd;
    }

    (string T5, string Ella) TinyText()
    {
        string t5 = Path.Combine(_dir, "t5");
        Directory.CreateDirectory(t5);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.PathOf("text", "t5", f), Path.Combine(t5, f));
        File.Copy(Fixtures.PathOf("text", "t5-tokenizer", "spiece.model"), Path.Combine(t5, "spiece.model"));
        string ella = Path.Combine(_dir, "ella64.safetensors");
        using var c = new EllaConnector(new EllaConnectorConfig { TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 1, Heads = 4, NumLatents = 8, InputDim = 64 });
        c.Save(ella);
        return (t5, ella);
    }

    [Fact]
    public void Compare_writes_one_labelled_grid_of_three()
    {
        var (t5, ella) = TinyText();
        string output = Path.Combine(_dir, "grid.png");
        var r = CliRunner.Run("compare", "--sd", TinySdWithClip(), "--t5", t5, "--ella", ella, "--prompt", "a red car on a beach",
            "--steps", "2", "--width", "64", "--height", "64", "--seed", "3", "-o", output);
        Assert.True(r.ExitCode == 0, r.Error);
        var grid = RgbImage.Load(output);
        Assert.True(grid.Width == 3 * 64 + 2 * 4, $"grid width {grid.Width}");
        Assert.True(grid.Height > 64);
        Assert.Contains("Seed: 3", PngText.Read(File.ReadAllBytes(output))["parameters"]);
    }

    [Fact]
    public void Ella_plus_clip_conditions_on_141_tokens_and_clip_mode_runs()
    {
        var (t5, ella) = TinyText();
        using var pipeline = EllaPipeline.Load(new PipelineLoadOptions { StableDiffusion = TinySdWithClip(), T5 = t5, Ella = ella, LoadClip = true });
        using var _ = inference_mode();
        foreach (var mode in new[] { GenerationMode.Clip, GenerationMode.EllaClip })
        {
            var request = new GenerationRequest { Prompts = ["a red car", "two cats"], Mode = mode, Steps = 2, Width = 64, Height = 64, Seed = 5 };
            using var result = pipeline.Generate(request);
            Assert.Equal([2L, 3, 64, 64], result.Images.shape);
        }
        // The concatenated condition: ELLA's latents then CLIP's 77 tokens.
        using (var ellaCond = new EllaConditioner(pipeline.Connector!, [randn(1, 5, 64)], ScalarType.Float32))
        using (var concat = new ConcatConditioner(ellaCond, new StaticConditioner(randn(1, 77, 64))))
        using (var condition = concat.At(new StepTime(999, tensor(999L))))
        {
            Assert.Equal([1L, 8 + 77, 64], condition.shape);
            using var first = ellaCond.At(new StepTime(999, tensor(999L)));
            Assert.True(condition[.., ..8].eq(first).all().item<bool>());
        }
        var prompt = string.Join(" ", Enumerable.Repeat("a very long prompt about many things", 20));
        using var long_ = pipeline.Generate(new GenerationRequest { Prompts = [prompt], Mode = GenerationMode.EllaClip, Steps = 1, Width = 64, Height = 64, Seed = 5 });
        Assert.Contains(long_.Warnings, w => w.Contains("CLIP tokens"));
    }
}
