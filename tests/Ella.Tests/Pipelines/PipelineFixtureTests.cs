using System.Text.Json;
using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Modules.UNet;
using Ella.Modules.Vae;
using Ella.Pipelines;
using Ella.Schedulers;
using Ella.Tests.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Pipelines;

/// <summary>The whole ELLA sampling loop from text features, per step, against inference.py + diffusers.</summary>
public class PipelineFixtureTests
{
    static string Dir => Fixtures.PathOf("diffusion", "pipeline");

    sealed record Models(UNet2DConditionModel Unet, AutoencoderKL Vae, EllaConnector Ella, SchedulerConfig Scheduler);

    static readonly Lazy<Models> Loaded = new(() =>
    {
        using var doc = Fixtures.Json("diffusion", "pipeline", "runs.json");
        string model = Path.Combine(Dir, doc.RootElement.GetProperty("model_dir").GetString()!);
        return new Models(UNet2DConditionModel.FromPretrained(Path.Combine(model, "unet")), AutoencoderKL.FromPretrained(Path.Combine(model, "vae")),
            EllaConnector.FromPretrained(Path.Combine(model, "ella.safetensors")), SchedulerConfig.Load(Path.Combine(model, "scheduler")));
    });

    public static IEnumerable<object[]> Runs()
    {
        using var doc = Fixtures.Json("diffusion", "pipeline", "runs.json");
        foreach (var r in doc.RootElement.GetProperty("runs").EnumerateArray()) yield return [r.GetProperty("name").GetString()!];
    }

    static JsonElement Run(string name)
    {
        using var doc = Fixtures.Json("diffusion", "pipeline", "runs.json");
        return doc.RootElement.GetProperty("runs").EnumerateArray().First(r => r.GetProperty("name").GetString() == name).Clone();
    }

    /// <summary>One generator (<c>torch.Generator('cpu').manual_seed(seed)</c>), or a generator list (diffusers'
    /// per-row randn): the seeds from a <c>seeds</c> array, a <c>seed</c> array, or seed+i when the generator text is a list.</summary>
    static SeedGenerators Seeds(JsonElement run, long batch)
    {
        if (run.TryGetProperty("seeds", out var list) && list.ValueKind == JsonValueKind.Array)
            return SeedGenerators.FromSeeds(list.EnumerateArray().Select(e => e.GetInt64()).ToList());
        var seed = run.GetProperty("seed");
        if (seed.ValueKind == JsonValueKind.Array) return SeedGenerators.FromSeeds(seed.EnumerateArray().Select(e => e.GetInt64()).ToList());
        string text = run.TryGetProperty("generator", out var g) && g.ValueKind == JsonValueKind.String ? g.GetString()! : "";
        bool isList = text.TrimStart().StartsWith('[') || text.Contains(" for ") || text.Contains("list", StringComparison.OrdinalIgnoreCase);
        return SeedGenerators.Create(isList ? SeedMode.PerImage : SeedMode.Batch, seed.GetInt64(), (int)batch);
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public void Every_step_matches_the_reference(string name)
    {
        var run = Run(name);
        var m = Loaded.Value;
        var data = Fixtures.Load(Path.Combine(Dir, run.GetProperty("file").GetString()!));
        double guidance = run.GetProperty("guidance_scale").GetDouble();
        int steps = run.GetProperty("num_inference_steps").GetInt32();
        var flexible = run.GetProperty("flexible_max_length_workaround");
        var condLengths = run.GetProperty("cond_lengths").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int uncondLength = run.GetProperty("uncond_length").GetInt32();
        bool isFlexible = flexible.ValueKind == JsonValueKind.Array;

        var scheduler = SchedulerFactory.Create("dpm++2m", m.Scheduler);
        scheduler.SetTimesteps(steps);
        Assert.Equal(data["timesteps"].to_type(ScalarType.Float64).data<double>().ToArray(), scheduler.Timesteps);

        var prompt = data["prompt_embeds"];
        var negative = data["negative_prompt_embeds"];
        long batch = prompt.shape[0];
        IReadOnlyList<Tensor> Rows(Tensor features, Func<long, int> length) =>
            Enumerable.Range(0, (int)batch).Select(r => features[r..(r + 1), ..(isFlexible ? length(r) : (int)features.shape[1])]).ToList();
        using var cond = new EllaConditioner(m.Ella, Rows(prompt, r => condLengths[r]), ScalarType.Float32);
        using var uncond = new EllaConditioner(m.Ella, Rows(negative, _ => uncondLength), ScalarType.Float32);

        var seeds = Seeds(run, batch);
        var generator = seeds.Main;
        scheduler.RowGenerators = seeds.Rows;
        using var _ = inference_mode();
        var latents = seeds.Randn([batch, m.Unet.Config.InChannels, data["init_noise"].shape[2], data["init_noise"].shape[3]]) * scheduler.InitNoiseSigma;
        TensorAssert.Close(data["latents_0"], latents, $"{name} latents_0");
        var trace = new DenoisingTrace();
        var final = DenoisingLoop.Run(m.Unet, scheduler, latents, cond, guidance > 1 ? uncond : null, guidance, generator, ScalarType.Float32, trace: trace);
        for (int i = 0; i < steps; i++)
        {
            TensorAssert.Close(data["latent_model_inputs"][i], trace.ModelInputs[i], $"{name} step {i} UNet input");
            TensorAssert.Close(data["ella_outputs"][i], trace.Conditions[i], $"{name} step {i} ELLA output");
            TensorAssert.Close(data["noise_preds"][i], trace.NoisePredictions[i], $"{name} step {i} guided noise");
            TensorAssert.Close(data["latents"][i + 1], trace.Latents[i], $"{name} step {i} latents");
        }
        TensorAssert.Close(data["final_latents"], final, $"{name} final latents");
        var image = DenoisingLoop.Decode(m.Vae, final, ScalarType.Float32);
        TensorAssert.Close(data["image"], image, $"{name} image");
    }
}

/// <summary>bf16 end to end on the fixture run: it must run, and its deviation from the fp32 reference is reported.</summary>
public class PipelineBf16Tests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public void Bf16_generation_reports_its_psnr_against_fp32()
    {
        string dir = Fixtures.PathOf("diffusion", "pipeline");
        string model = Path.Combine(dir, "model");
        var data = Fixtures.Load(Path.Combine(dir, "run_flex_g7.5.safetensors"));
        using var pipeline = EllaPipeline.Load(new PipelineLoadOptions { StableDiffusion = model, Ella = Path.Combine(model, "ella.safetensors"), DType = ScalarType.BFloat16 });
        var request = new GenerationRequest
        {
            Prompts = [], PromptEmbeds = data["prompt_embeds"], NegativePromptEmbeds = data["negative_prompt_embeds"],
            Steps = 10, Width = 64, Height = 64, Seed = 1234, GuidanceScale = 7.5,
        };
        using var result = pipeline.Generate(request);
        double mse = (result.Images - data["image"]).pow(2).mean().item<float>();
        double psnr = 10 * Math.Log10(1.0 / Math.Max(mse, 1e-12));
        output.WriteLine($"bf16 vs fp32 reference image: PSNR {psnr:F2} dB, max |diff| {(result.Images - data["image"]).abs().max().item<float>():F4}");
        Assert.False(double.IsNaN(psnr));
        Assert.Equal(ScalarType.Float32, result.Images.dtype);
    }
}
