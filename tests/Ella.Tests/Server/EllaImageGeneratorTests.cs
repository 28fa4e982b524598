using System.Drawing;
using Ella.Extensions.AI;
using Ella.Imaging;
using Ella.Pipelines;
using Microsoft.Extensions.AI;

#pragma warning disable MEAI001 // IImageGenerator is experimental

namespace Ella.Tests.Server;

public sealed class EllaImageGeneratorTests(TinyModels models) : IClassFixture<TinyModels>
{
    [Fact]
    public async Task Generates_pngs_through_the_MEAI_interface_with_options_and_additional_properties_mapped()
    {
        IImageGenerator generator = new EllaImageGenerator(models.Pipeline, new GenerationRequest { Prompts = [], Steps = 2, Width = 64, Height = 64 }, "ella-tiny");
        var options = new ImageGenerationOptions
        {
            Count = 2, ImageSize = new Size(64, 32), MediaType = "image/png",
            AdditionalProperties = new() { ["negative_prompt"] = "fog", ["steps"] = 3, ["guidance_scale"] = 4.5, ["seed"] = 21L, ["scheduler"] = "ddim", ["mode"] = "ella+clip", ["other_vendor_option"] = true },
        };
        var response = await generator.GenerateImagesAsync("a small house", options);
        Assert.Equal(2, response.Contents.Count);

        var expectedRequest = new GenerationRequest { Prompts = ["a small house"], BatchSize = 2, Width = 64, Height = 32, NegativePrompt = "fog", Steps = 3, GuidanceScale = 4.5, Seed = 21, Scheduler = "ddim", Mode = GenerationMode.EllaClip };
        using var direct = models.Pipeline.Generate(expectedRequest);
        for (int i = 0; i < 2; i++)
        {
            var content = Assert.IsType<DataContent>(response.Contents[i]);
            Assert.Equal("image/png", content.MediaType);
            byte[] png = content.Data.ToArray();
            string path = Path.Combine(models.Dir, $"meai-{i}.png");
            File.WriteAllBytes(path, png);
            Assert.Equal(RgbImage.FromTensor(direct.Images[i]).Pixels, RgbImage.Load(path).Pixels);
            string parameters = GenerationParameters.Text(models.Pipeline, expectedRequest, direct, "a small house", i, "fp32");
            Assert.Equal(parameters, PngText.Read(png)["parameters"]);
            Assert.Equal(parameters, content.AdditionalProperties!["parameters"]);
        }
        Assert.Equal("ella-tiny", generator.GetService<ImageGeneratorMetadata>()!.DefaultModelId);
        Assert.Same(models.Pipeline, generator.GetService<EllaPipeline>());
    }

    [Fact]
    public async Task Bad_options_are_argument_errors_naming_the_property()
    {
        using var generator = new EllaImageGenerator(models.Pipeline);
        var e = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => generator.GenerateImagesAsync("x", new ImageGenerationOptions { AdditionalProperties = new() { ["steps"] = 0 } }));
        Assert.Contains("steps", e.Message);
        var m = await Assert.ThrowsAsync<ArgumentException>(() => generator.GenerateImagesAsync("x", new ImageGenerationOptions { AdditionalProperties = new() { ["mode"] = "t5" } }));
        Assert.Contains("mode", m.Message);
        await Assert.ThrowsAsync<NotSupportedException>(() => generator.GenerateImagesAsync("x", new ImageGenerationOptions { MediaType = "image/jpeg" }));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => generator.GenerateImagesAsync("x", new ImageGenerationOptions { Count = 9 }));
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => generator.GenerateImagesAsync("x", new ImageGenerationOptions { ImageSize = new Size(64, 64) }, cancelled.Token));
    }
}
