using Ella.Imaging;
using Ella.Pipelines;
using Ella.Pipelines.ControlNet;
using Ella.Tests.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Tools;

/// <summary>Per-image seeds (diffusers' generator list), the tools' loop without leaks, and the Canny preprocessor.</summary>
public class SeedsAndLeaksTests
{
    static GenerationRequest Base(string scheduler = "euler-a")
    {
        var data = Fixtures.Load(Path.Combine(ToolsFixtureTests.Dir, "img2img_ddim_s0.3_b2.safetensors"));
        return new GenerationRequest
        {
            Prompts = [], PromptEmbeds = data["prompt_embeds"], NegativePromptEmbeds = data["negative_prompt_embeds"],
            TokenLength = Ella.Text.TokenLength.Fixed, Scheduler = scheduler, Steps = 3, Width = 64, Height = 64, Seed = 40,
        };
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Per_image_seeds_reproduce_each_image_alone(bool img2img)
    {
        var pipeline = ToolsFixtureTests.Pipeline("unet");
        var init = RgbImage.Load(Path.Combine(ToolsFixtureTests.Dir, "img2img_dpm_s0.6-init.png"));
        var request = Base() with { SeedMode = SeedMode.PerImage, InitImage = img2img ? init : null, Strength = img2img ? 0.7 : null };
        lock (ToolsFixtureTests.Pipelines)
        {
            using var both = pipeline.Generate(request);
            for (int i = 0; i < 2; i++)
            {
                var embeds = request.PromptEmbeds!;
                using var alone = pipeline.Generate(request with
                {
                    PromptEmbeds = embeds[i..(i + 1)], NegativePromptEmbeds = request.NegativePromptEmbeds![i..(i + 1)], Seed = 40 + i,
                });
                // Same random numbers; only batched vs single-row float arithmetic differs (the project's fp32 tolerance).
                TensorAssert.Close(alone.Images[0], both.Images[i], $"image {i} of a per-image batch vs its run alone");
            }
            // batch mode draws differently: the second image is not the seed+1 image
            using var batch = pipeline.Generate(request with { SeedMode = SeedMode.Batch });
            Assert.True((batch.Images[1] - both.Images[1]).abs().max().item<float>() > 1e-3);
        }
    }

    [Fact]
    public void Tool_loops_do_not_leak_tensors()
    {
        var pipeline = ToolsFixtureTests.Pipeline("unet");
        string dir = ToolsFixtureTests.Dir;
        var init = RgbImage.Load(Path.Combine(dir, "inpaint4_dpm_s1.0-init.png"));
        var mask = RgbImage.Load(Path.Combine(dir, "inpaint4_dpm_s1.0-mask.png"));
        var control = RgbImage.Load(Path.Combine(dir, "controlnet_dpm_s0.8-control.png"));
        var request = Base("dpm++2m") with
        {
            InitImage = init, Mask = mask, Strength = 0.9,
            ControlNets = [new ControlNetUnit(Path.Combine(dir, "controlnet"), control, 0.5, 0.0, 0.7)],
            Loras = [new Lora.LoraSpec(Path.Combine(dir, "lora_kohya.safetensors"), 0.5)],
        };
        lock (ToolsFixtureTests.Pipelines)
        {
            pipeline.Generate(request).Dispose(); // warm-up (loads the ControlNet, merges the LoRA)
            DisposeScopeManager.Statistics.Reset();
            long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
            for (int i = 0; i < 2; i++) pipeline.Generate(request).Dispose();
            Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
            pipeline.Generate(Base("dpm++2m") with { Steps = 1 }).Dispose(); // unmerge
        }
    }

    [Fact]
    public void Canny_marks_the_edges_of_a_square()
    {
        var image = new RgbImage(64, 64);
        for (int y = 16; y < 48; y++)
            for (int x = 16; x < 48; x++) image.Pixels[(y * 64 + x) * 3] = image.Pixels[(y * 64 + x) * 3 + 1] = image.Pixels[(y * 64 + x) * 3 + 2] = 255;
        var edges = ControlPreprocessor.Apply("canny", image);
        byte At(int x, int y) => edges.Pixels[(y * 64 + x) * 3];
        Assert.Equal(0, At(32, 32));
        Assert.Equal(0, At(4, 4));
        Assert.True(At(16, 32) == 255 || At(15, 32) == 255, "the left edge is marked");
        Assert.Same(image, ControlPreprocessor.Apply("none", image));
        Assert.Throws<EllaException>(() => ControlPreprocessor.Apply("depth", image));
    }
}
