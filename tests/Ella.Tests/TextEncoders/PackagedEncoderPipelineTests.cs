using Ella.Configs;
using Ella.Imaging;
using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using Ella.Text;
using Ella.TextEncoders;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.TextEncoders;

/// <summary>ELLA with a packaged text encoder: `ella generate --text-encoder minilm` on the tiny fixture UNet/VAE with a
/// random connector that reads 384-wide MiniLM features and writes 64-wide tokens (the UNet's cross_attention_dim).</summary>
public sealed class PackagedEncoderPipelineTests : IDisposable
{
    static PackagedEncoderPipelineTests() => Fixtures.InitTorch();

    readonly string _dir = Directory.CreateTempSubdirectory("ella-minilm-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    static string Model => Fixtures.PathOf("diffusion", "pipeline", "model");

    string Connector(int inputDim)
    {
        string path = Path.Combine(_dir, $"ella-in{inputDim}.safetensors");
        manual_seed(11);
        using var c = new EllaConnector(new EllaConnectorConfig { TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 2, Heads = 4, NumLatents = 8, InputDim = inputDim });
        c.Save(path);
        return path;
    }

    [Theory]
    [InlineData("minilm")]
    [InlineData("arctic-xs")]
    public void Cli_generate_runs_end_to_end_with_a_packaged_text_encoder(string kind)
    {
        string output = Path.Combine(_dir, kind + ".png");
        var r = CliRunner.Run("generate", "--sd", Model, "--text-encoder", kind, "--ella", Connector(384),
            "--prompt", "a large red circle to the left of a small blue square on a white background",
            "--steps", "2", "--width", "64", "--height", "64", "--seed", "3", "-o", output);
        Assert.True(r.ExitCode == 0, r.Error);
        var image = RgbImage.Load(output);
        Assert.Equal(64, image.Width);
        Assert.Contains($"Text encoder: {kind}", PngText.Read(File.ReadAllBytes(output))["parameters"]);
    }

    [Fact]
    public void A_connector_of_another_width_is_refused_with_exit_code_2()
    {
        var r = CliRunner.Run("generate", "--sd", Model, "--text-encoder", "minilm", "--ella", Connector(64),
            "--prompt", "a red circle", "--steps", "1", "--width", "64", "--height", "64", "-o", Path.Combine(_dir, "x.png"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("input_dim", r.Error);
        Assert.Contains("384", r.Error);
        Assert.DoesNotContain("   at ", r.Error);
        Assert.False(File.Exists(Path.Combine(_dir, "x.png")));
    }

    [Fact]
    public void An_unknown_text_encoder_is_refused_with_exit_code_2()
    {
        var r = CliRunner.Run("generate", "--sd", Model, "--text-encoder", "bert", "--ella", Connector(384), "--prompt", "a", "-o", Path.Combine(_dir, "x.png"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("bert", r.Error);
    }

    /// <summary>The pipeline's image equals the loop run by hand on features from a separately built encoder (what a
    /// trainer would use): the pipeline adds nothing to MiniLM's features.</summary>
    [Theory]
    [InlineData("flexible")]
    [InlineData("fixed")]
    public void Pipeline_equals_the_loop_on_features_from_the_factorys_encoder(string length)
    {
        string ella = Connector(384);
        var mode = length == "fixed" ? TokenLength.Fixed : TokenLength.Flexible;
        using var pipeline = EllaPipeline.Load(new PipelineLoadOptions { StableDiffusion = Model, Ella = ella, TextEncoder = TextEncoderKind.MiniLM });
        const string prompt = "Two green triangles above a purple square, beige background.";
        var request = new GenerationRequest { Prompts = [prompt], NegativePrompt = "blurry", Steps = 2, Width = 64, Height = 64, Seed = 5, TokenLength = mode, MaxLength = 32 };
        using var result = pipeline.Generate(request);

        using var _ = inference_mode();
        using var encoder = TextEncoderFactory.Create(TextEncoderKind.MiniLM, null, ScalarType.Float32, CPU);
        using var connector = EllaConnector.FromPretrained(ella);
        using var p = encoder.Encode(prompt, mode, 32);
        using var n = encoder.Encode("blurry", mode, 32);
        Assert.Equal(mode == TokenLength.Fixed ? 32 : ((OnnxBertTextFeatureEncoder)encoder).Tokenizer.EncodeIds(prompt).Length, p.Features.shape[1]);
        using var cond = new EllaConditioner(connector, [p.Features], ScalarType.Float32);
        using var uncond = new EllaConditioner(connector, [n.Features], ScalarType.Float32);
        using var scheduler = Ella.Schedulers.SchedulerFactory.Create("dpm++2m", pipeline.StableDiffusion.SchedulerConfig);
        scheduler.SetTimesteps(2);
        var generator = new Generator(5);
        using var latents = DenoisingLoop.InitialLatents(1, 4, 8, 8, generator, scheduler.InitNoiseSigma, CPU);
        using var final = DenoisingLoop.Run(pipeline.StableDiffusion.Unet, scheduler, latents, cond, uncond, 7.5, generator, ScalarType.Float32);
        using var image = DenoisingLoop.Decode(pipeline.StableDiffusion.Vae, final, ScalarType.Float32);
        TensorAssert.Close(image, result.Images, $"minilm ({length})", 1e-5);
    }

    [Fact]
    public void A_prompt_longer_than_the_model_limit_is_truncated_with_a_warning()
    {
        using var pipeline = EllaPipeline.Load(new PipelineLoadOptions { StableDiffusion = Model, Ella = Connector(384), TextEncoder = TextEncoderKind.MiniLM });
        string prompt = string.Join(" ", Enumerable.Repeat("circle", 300)) + " finale";
        using var result = pipeline.Generate(new GenerationRequest { Prompts = [prompt], Steps = 1, Width = 64, Height = 64, Seed = 1, GuidanceScale = 1 });
        var warning = Assert.Single(result.Warnings);
        Assert.StartsWith("prompt truncated to 256 MiniLM tokens (of 303); dropped: \"circle circle", warning);
    }

    [Fact]
    public void Generating_with_minilm_does_not_leak_tensors()
    {
        using var pipeline = EllaPipeline.Load(new PipelineLoadOptions { StableDiffusion = Model, Ella = Connector(384), TextEncoder = TextEncoderKind.MiniLM });
        var request = new GenerationRequest { Prompts = ["a cat"], Steps = 1, Width = 64, Height = 64, Seed = 1 };
        pipeline.Generate(request).Dispose(); // warm-up
        DisposeScopeManager.Statistics.Reset();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 2; i++) pipeline.Generate(request with { Prompts = [$"a cat number {i}"] }).Dispose();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
