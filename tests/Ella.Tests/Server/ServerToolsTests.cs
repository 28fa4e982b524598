using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Ella.Imaging;
using Ella.Lora;
using Ella.Pipelines;
using Ella.Weights;
using SkiaSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Server;

/// <summary>
/// The community tools over HTTP: A1111's img2img (with a mask: inpainting), OpenAI's images/edits (multipart, the
/// transparent pixels of the mask repainted) and per-request LoRAs from --lora-dir. Each server image must equal the
/// pipeline's own image for the same request.
/// </summary>
public sealed class ServerToolsTests(TinyModels models) : IClassFixture<TinyModels>
{
    static RgbImage Decode(byte[] png) => RgbImage.Decode(png, "response").Image;

    static RgbImage Pattern(int width, int height, int seed)
    {
        var image = new RgbImage(width, height);
        var rng = new Random(seed);
        rng.NextBytes(image.Pixels);
        return image;
    }

    /// <summary>White (repaint) on the left half, black elsewhere.</summary>
    static RgbImage LeftHalf(int width, int height)
    {
        var mask = new RgbImage(width, height);
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width / 2; x++)
                mask.Pixels[3 * (y * width + x)] = mask.Pixels[3 * (y * width + x) + 1] = mask.Pixels[3 * (y * width + x) + 2] = 255;
        return mask;
    }

    /// <summary>An RGBA PNG: the given colours with the given alpha.</summary>
    static byte[] Rgba(RgbImage rgb, Func<int, int, byte> alpha)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(rgb.Width, rgb.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < rgb.Height; y++)
            for (int x = 0; x < rgb.Width; x++)
            {
                int i = 3 * (y * rgb.Width + x);
                bitmap.SetPixel(x, y, new SKColor(rgb.Pixels[i], rgb.Pixels[i + 1], rgb.Pixels[i + 2], alpha(x, y)));
            }
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    static byte[] Generate(EllaPipeline pipeline, GenerationRequest request)
    {
        using var result = pipeline.Generate(request);
        return RgbImage.FromTensor(result.Images[0]).Pixels;
    }

    [Fact]
    public async Task Automatic1111_img2img_and_inpainting_equal_the_pipelines_images()
    {
        await using var server = await models.StartAsync();
        using var http = server.Client();
        var init = Pattern(64, 64, 1);
        var mask = LeftHalf(64, 64);
        string b64 = Convert.ToBase64String(init.EncodePng());

        // img2img: no width/height, so the init image's size; denoising_strength 0.6.
        var r = await http.PostJson("sdapi/v1/img2img", new { prompt = "a lake", init_images = new[] { "data:image/png;base64," + b64 }, denoising_strength = 0.6, steps = 4, seed = 3, cfg_scale = 5, sampler_name = "Euler" });
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var json = await r.Json();
        var image = Decode(Convert.FromBase64String(json.GetProperty("images")[0].GetString()!));
        var expected = Generate(models.Pipeline, new GenerationRequest
        {
            Prompts = ["a lake"], InitImage = init, Strength = 0.6, Steps = 4, Seed = 3, GuidanceScale = 5, Scheduler = "euler", Width = 64, Height = 64,
        });
        Assert.Equal(expected, image.Pixels);
        Assert.Equal(0.6, JsonDocument.Parse(json.GetProperty("info").GetString()!).RootElement.GetProperty("denoising_strength").GetDouble());

        // Inpainting with A1111's default strength (0.75), and the same mask inverted.
        foreach (int invert in new[] { 0, 1 })
        {
            var inpaint = await http.PostJson("sdapi/v1/img2img", new { prompt = "a boat", init_images = new[] { b64 }, mask = Convert.ToBase64String(mask.EncodePng()), inpainting_mask_invert = invert, steps = 4, seed = 4, width = 64, height = 64 });
            Assert.Equal(HttpStatusCode.OK, inpaint.StatusCode);
            var painted = Decode(Convert.FromBase64String((await inpaint.Json()).GetProperty("images")[0].GetString()!));
            var repaint = invert == 1 ? Ella.Server.Tools.RequestImages.Invert(mask) : mask;
            var direct = Generate(models.Pipeline, new GenerationRequest { Prompts = ["a boat"], InitImage = init, Mask = repaint, Strength = 0.75, Steps = 4, Seed = 4, Width = 64, Height = 64 });
            Assert.Equal(direct, painted.Pixels);
        }
    }

    [Fact]
    public async Task OpenAI_edits_repaint_the_transparent_pixels_of_the_mask()
    {
        await using var server = await models.StartAsync();
        using var http = server.Client();
        var init = Pattern(64, 64, 2);
        // OpenAI's convention: alpha 0 = edit. The left half is transparent.
        byte[] maskPng = Rgba(new RgbImage(64, 64), (x, _) => x < 32 ? (byte)0 : (byte)255);
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(init.EncodePng()) { Headers = { ContentType = new MediaTypeHeaderValue("image/png") } }, "image", "image.png" },
            { new ByteArrayContent(maskPng) { Headers = { ContentType = new MediaTypeHeaderValue("image/png") } }, "mask", "mask.png" },
            { new StringContent("a red door"), "prompt" },
            { new StringContent("2"), "n" },
            { new StringContent("5"), "seed" },
            { new StringContent("3"), "steps" },
        };
        var r = await http.PostAsync("v1/images/edits", form);
        string text = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == HttpStatusCode.OK, text);
        var data = JsonDocument.Parse(text).RootElement.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        var image = Decode(Convert.FromBase64String(data[0].GetProperty("b64_json").GetString()!));
        var expected = Generate(models.Pipeline, new GenerationRequest
        {
            Prompts = ["a red door"], InitImage = init, Mask = LeftHalf(64, 64), BatchSize = 2, Seed = 5, Steps = 3, Width = 64, Height = 64,
        });
        Assert.Equal(expected, image.Pixels);

        // Bad edits: no image; a mask of another size; a strength out of range. Each a 400 naming the field.
        foreach (var (content, param) in new (MultipartFormDataContent, string)[]
                 {
                     (new() { { new StringContent("x"), "prompt" } }, "image"),
                     (new() { { new ByteArrayContent(init.EncodePng()), "image", "i.png" }, { new ByteArrayContent(Rgba(new RgbImage(32, 32), (_, _) => 0)), "mask", "m.png" }, { new StringContent("x"), "prompt" } }, "mask"),
                     (new() { { new ByteArrayContent(init.EncodePng()), "image", "i.png" }, { new StringContent("x"), "prompt" }, { new StringContent("1.5"), "strength" } }, "strength"),
                     (new() { { new ByteArrayContent("not a png"u8.ToArray()), "image", "i.png" }, { new StringContent("x"), "prompt" } }, "image"),
                 })
        {
            var bad = await http.PostAsync("v1/images/edits", content);
            string body = await bad.Content.ReadAsStringAsync();
            Assert.True(bad.StatusCode == HttpStatusCode.BadRequest, $"{param}: {(int)bad.StatusCode} {body}");
            Assert.Equal(param, JsonDocument.Parse(body).RootElement.GetProperty("error").GetProperty("param").GetString());
        }
    }

    [Fact]
    public async Task Loras_are_merged_per_request_from_the_lora_dir_and_switched_off_after()
    {
        string dir = Directory.CreateTempSubdirectory("ella-serve-loras-").FullName;
        try
        {
            // A kohya-layout LoRA on the first self-attention query of this UNet.
            var q = models.Pipeline.StableDiffusion.Unet.state_dict()["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"];
            var gen = new Generator(9);
            SafetensorsWriter.Save(Path.Combine(dir, "style.safetensors"), new Dictionary<string, Tensor>
            {
                ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"] = randn([2, q.shape[1]], generator: gen),
                ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"] = randn([q.shape[0], 2], generator: gen),
            });
            var options = TinyModels.Options(o => o with { Defaults = o.Defaults with { LoraDirectory = dir } });
            await using var server = await models.StartAsync(options);
            using var http = server.Client();

            var listed = await (await http.GetAsync("sdapi/v1/loras")).Json();
            Assert.Equal("style", listed[0].GetProperty("name").GetString());

            async Task<byte[]> Ask(object body)
            {
                var r = await http.PostJson("v1/images/generations", body);
                string text = await r.Content.ReadAsStringAsync();
                Assert.True(r.StatusCode == HttpStatusCode.OK, text);
                return Decode(Convert.FromBase64String(JsonDocument.Parse(text).RootElement.GetProperty("data")[0].GetProperty("b64_json").GetString()!)).Pixels;
            }
            var plain = Generate(models.Pipeline, new GenerationRequest { Prompts = ["a fox"], Seed = 1, Steps = 2, Width = 64, Height = 64 });
            var styled = Generate(models.Pipeline, new GenerationRequest { Prompts = ["a fox"], Seed = 1, Steps = 2, Width = 64, Height = 64, Loras = [new LoraSpec(Path.Combine(dir, "style.safetensors"), 0.7)] });
            Assert.NotEqual(plain, styled);
            Assert.Equal(styled, await Ask(new { prompt = "a fox", seed = 1, steps = 2, loras = new object[] { new { name = "style", weight = 0.7 } } }));
            Assert.Equal(plain, await Ask(new { prompt = "a fox", seed = 1, steps = 2 }));
            Assert.Equal(styled, await Ask(new { prompt = "a fox", seed = 1, steps = 2, loras = new[] { "style:0.7" } }));
            // A1111's prompt tag, removed from the prompt.
            Assert.Equal(styled, await Ask(new { prompt = "a fox <lora:style:0.7>", seed = 1, steps = 2 }));
            Assert.Equal(plain, await Ask(new { prompt = "a fox", seed = 1, steps = 2 }));

            foreach (var body in new object[] { new { prompt = "x", loras = new[] { "missing" } }, new { prompt = "x", loras = new[] { "../style" } }, new { prompt = "x", loras = "style" } })
            {
                var bad = await http.PostJson("v1/images/generations", body);
                string text = await bad.Content.ReadAsStringAsync();
                Assert.True(bad.StatusCode == HttpStatusCode.BadRequest, text);
                Assert.Equal("loras", JsonDocument.Parse(text).RootElement.GetProperty("error").GetProperty("param").GetString());
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
