using System.Text.Json;
using Ella.Imaging;
using Ella.Lora;
using Ella.Pipelines;
using Ella.Pipelines.ControlNet;
using Ella.Tests.Infrastructure;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ella.Tests.Tools;

/// <summary>img2img, inpainting (4- and 9-channel), ControlNet and LoRA runs against diffusers 0.27.2 with ELLA
/// (tests/fixtures/tools): every case of cases.json, through the public pipeline API.</summary>
public class ToolsFixtureTests(ITestOutputHelper output)
{
    internal static string Dir => Fixtures.PathOf("tools");

    static JsonElement Index()
    {
        using var doc = Fixtures.Json("tools", "cases.json");
        return doc.RootElement.Clone();
    }

    public static IEnumerable<object[]> Cases() =>
        Index().GetProperty("cases").EnumerateArray().Select(c => new object[] { c.GetProperty("name").GetString()! });

    internal static readonly Dictionary<string, EllaPipeline> Pipelines = new();

    /// <summary>An SD folder for the fixture model with <paramref name="unet"/> as its unet/ (symbolic links).</summary>
    internal static string SdFolder(string unet)
    {
        string model = Path.GetFullPath(Path.Combine(Dir, Index().GetProperty("model_dir").GetString()!));
        if (unet == "unet") return model;
        string sd = Path.Combine(Path.GetTempPath(), $"ella-tools-{unet}-{Environment.ProcessId}");
        Directory.CreateDirectory(sd);
        foreach (var part in new[] { "vae", "scheduler" })
            if (!Directory.Exists(Path.Combine(sd, part))) Directory.CreateSymbolicLink(Path.Combine(sd, part), Path.Combine(model, part));
        if (!Directory.Exists(Path.Combine(sd, "unet"))) Directory.CreateSymbolicLink(Path.Combine(sd, "unet"), Path.Combine(Dir, unet));
        return sd;
    }

    internal static string EllaFile => Path.GetFullPath(Path.Combine(Dir, Index().GetProperty("model_dir").GetString()!, "ella.safetensors"));

    /// <summary>The fixture's SD folder, with <paramref name="unet"/> (a folder of the tools fixture, or the model's own
    /// unet) linked in as unet/.</summary>
    internal static EllaPipeline Pipeline(string unet)
    {
        lock (Pipelines)
        {
            if (Pipelines.TryGetValue(unet, out var p)) return p;
            p = EllaPipeline.Load(new PipelineLoadOptions { StableDiffusion = SdFolder(unet), Ella = EllaFile });
            Pipelines[unet] = p;
            return p;
        }
    }

    internal static GenerationRequest Request(JsonElement c)
    {
        var data = Fixtures.Load(Path.Combine(Dir, c.GetProperty("file").GetString()!));
        var inputs = c.GetProperty("inputs");
        string? Input(string key) => inputs.TryGetProperty(key, out var v) ? Path.Combine(Dir, v.GetString()!) : null;
        double? Number(string key) => c.TryGetProperty(key, out var v) ? v.GetDouble() : null;
        var image = data["image"];
        var request = new GenerationRequest
        {
            Prompts = [], PromptEmbeds = data["prompt_embeds"], NegativePromptEmbeds = data["negative_prompt_embeds"],
            TokenLength = Ella.Text.TokenLength.Fixed, Scheduler = c.GetProperty("scheduler").GetString()!,
            Steps = c.GetProperty("steps").GetInt32(), GuidanceScale = c.GetProperty("guidance").GetDouble(), Seed = c.GetProperty("seed").GetInt64(),
            Width = (int)image.shape[3], Height = (int)image.shape[2],
        };
        string kind = c.GetProperty("kind").GetString()!;
        if (Input("image") is { } init) request = request with { InitImage = RgbImage.Load(init), Strength = Number("strength") };
        if (Input("mask") is { } mask) request = request with { Mask = RgbImage.Load(mask) };
        if (Input("control_image") is { } control)
        {
            string net = c.TryGetProperty("controlnet", out var n) ? n.GetString()! : "controlnet";
            request = request with { ControlNets = [new ControlNetUnit(Path.Combine(Dir, net), RgbImage.Load(control), Number("conditioning_scale") ?? 1.0)] };
        }
        if (kind == "lora") request = request with { Loras = [new LoraSpec(Path.Combine(Dir, c.GetProperty("lora").GetString()!), Number("multiplier") ?? 1.0)] };
        return request;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Case_image_matches_diffusers(string name)
    {
        var c = Index().GetProperty("cases").EnumerateArray().First(e => e.GetProperty("name").GetString() == name);
        var expected = Fixtures.Load(Path.Combine(Dir, c.GetProperty("file").GetString()!))["image"];
        string unet = c.TryGetProperty("unet", out var u) ? u.GetString()! : "unet";
        var pipeline = Pipeline(unet);
        GenerationResult result;
        lock (Pipelines) result = pipeline.Generate(Request(c)); // a request without LoRAs unmerges the previous ones
        using (result)
        {
            double diff = (result.Images - expected).abs().max().item<float>();
            output.WriteLine($"{name}: max |ours − diffusers| = {diff:E2}");
            Assert.Equal(expected.shape, result.Images.shape);
            Assert.True(diff <= 2e-3, $"{name}: image differs by {diff} (> 2e-3)");
        }
    }
}
