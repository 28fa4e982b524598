using System.ClientModel;
using System.Net;
using System.Text.Json;
using Ella.Imaging;
using Ella.Pipelines;
using Ella.Server;
using OpenAI;
using OpenAI.Images;

namespace Ella.Tests.Server;

/// <summary>The OpenAI and Automatic1111 APIs on loopback, driven by clients nobody here wrote (the official OpenAI
/// .NET client, a plain HttpClient), over the tiny fixture models.</summary>
public sealed class ServerApiTests(TinyModels models) : IClassFixture<TinyModels>
{
    static RgbImage Decode(byte[] png)
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, png);
            return RgbImage.Load(path);
        }
        finally { File.Delete(path); }
    }

    [Fact]
    public async Task Official_OpenAI_client_gets_a_valid_png_with_parameters()
    {
        await using var server = await models.StartAsync(TinyModels.Options(o => o with { ApiKey = "sk-test" }));
        var client = new ImageClient("ella-tiny", new ApiKeyCredential("sk-test"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress!, "v1") });
        GeneratedImage image = (await client.GenerateImageAsync("a red ball on a table",
            new ImageGenerationOptions { Size = new GeneratedImageSize(64, 64), ResponseFormat = GeneratedImageFormat.Bytes })).Value;
        byte[] png = image.ImageBytes.ToArray();
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        var rgb = Decode(png);
        Assert.Equal((64, 64), (rgb.Width, rgb.Height));
        string parameters = PngText.Read(png)["parameters"];
        Assert.StartsWith("a red ball on a table\nNegative prompt: \nSteps: 2, ", parameters);
        Assert.Contains("Mode: ella", parameters);
    }

    [Fact]
    public async Task Server_image_is_the_pipelines_image_with_the_same_parameters_text_as_generate()
    {
        await using var server = await models.StartAsync();
        using var http = server.Client();
        var response = await http.PostJson("v1/images/generations", new { prompt = "two cats", size = "64x64", seed = 11, steps = 3, guidance_scale = 5.0, negative_prompt = "blurry", scheduler = "euler-a", mode = "ella" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await response.Json();
        var item = json.GetProperty("data")[0];
        byte[] png = Convert.FromBase64String(item.GetProperty("b64_json").GetString()!);

        var request = new GenerationRequest { Prompts = ["two cats"], Seed = 11, Steps = 3, GuidanceScale = 5.0, NegativePrompt = "blurry", Scheduler = "euler-a", Width = 64, Height = 64 };
        using var direct = models.Pipeline.Generate(request);
        var expected = RgbImage.FromTensor(direct.Images[0]);
        Assert.Equal(expected.Pixels, Decode(png).Pixels);
        string text = GenerationParameters.Text(models.Pipeline, request, direct, "two cats", 0, "fp32");
        Assert.Equal(text, PngText.Read(png)["parameters"]);
        Assert.Equal(text, item.GetProperty("parameters").GetString());
        Assert.Equal(11, json.GetProperty("seed").GetInt64());
    }

    [Fact]
    public async Task Url_format_serves_the_png_from_v1_files_and_output_dir_keeps_it()
    {
        string dir = Path.Combine(models.Dir, "out-" + Guid.NewGuid().ToString("N")[..6]);
        await using var server = await models.StartAsync(TinyModels.Options(o => o with { OutputDir = dir, ApiKey = "k" }));
        using var http = server.Client("k");
        var json = await (await http.PostJson("v1/images/generations", new { prompt = "a boat", n = 2, response_format = "url", seed = 3 })).Json();
        var data = json.GetProperty("data");
        Assert.Equal(2, data.GetArrayLength());
        using var anonymous = new HttpClient();
        foreach (var item in data.EnumerateArray())
        {
            Assert.False(item.TryGetProperty("b64_json", out _));
            string url = item.GetProperty("url").GetString()!;
            Assert.StartsWith(server.BaseAddress!.ToString() + "v1/files/", url);
            var file = await anonymous.GetAsync(url); // capability URL: no key needed, as <img src> cannot send one
            Assert.Equal("image/png", file.Content.Headers.ContentType?.MediaType);
            Assert.Contains("Batch size: 2", PngText.Read(await file.Content.ReadAsByteArrayAsync())["parameters"]);
        }
        Assert.Equal(HttpStatusCode.NotFound, (await anonymous.GetAsync(new Uri(server.BaseAddress!, "v1/files/0123456789abcdef0123456789abcdef.png"))).StatusCode);
        string jobId = json.GetProperty("job_id").GetString()!;
        Assert.True(File.Exists(Path.Combine(dir, $"{jobId}-0.png")) && File.Exists(Path.Combine(dir, $"{jobId}-1.png")));
    }

    [Fact]
    public async Task Automatic1111_flow_txt2img_then_progress_and_models()
    {
        await using var server = await models.StartAsync();
        using var http = server.Client();
        var response = await http.PostJson("sdapi/v1/txt2img", new { prompt = "a lighthouse", negative_prompt = "fog", steps = 2, cfg_scale = 6, seed = 5, width = 64, height = 64, batch_size = 2, sampler_name = "Euler a" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = await response.Json();
        Assert.Equal(2, json.GetProperty("images").GetArrayLength());
        foreach (var b64 in json.GetProperty("images").EnumerateArray())
        {
            byte[] png = Convert.FromBase64String(b64.GetString()!);
            Assert.Equal((64, 64), (Decode(png).Width, Decode(png).Height));
            Assert.Contains("Seed: 5", PngText.Read(png)["parameters"]);
        }
        Assert.Equal("Euler a", json.GetProperty("parameters").GetProperty("sampler_name").GetString());
        var info = JsonDocument.Parse(json.GetProperty("info").GetString()!).RootElement;
        Assert.Equal(5, info.GetProperty("seed").GetInt64());
        Assert.Equal(2, info.GetProperty("infotexts").GetArrayLength());
        Assert.Contains("Negative prompt: fog", info.GetProperty("infotexts")[0].GetString());

        // A long job: /progress follows it, /interrupt stops it.
        var slow = http.PostJson("sdapi/v1/txt2img", new { prompt = "slow", steps = 150, width = 64, height = 64, sampler_name = "DPM++ 2M Karras" });
        JsonElement progress = default;
        for (int i = 0; i < 400; i++)
        {
            progress = await (await http.GetAsync("sdapi/v1/progress")).Json();
            if (progress.GetProperty("state").GetProperty("sampling_step").GetInt32() > 0) break;
            await Task.Delay(25);
        }
        Assert.True(progress.GetProperty("progress").GetDouble() > 0, progress.ToString());
        Assert.Equal(150, progress.GetProperty("state").GetProperty("sampling_steps").GetInt32());
        Assert.StartsWith("job-", progress.GetProperty("state").GetProperty("job").GetString());
        await http.PostAsync("sdapi/v1/interrupt", null);
        var interrupted = await slow;
        Assert.Equal(HttpStatusCode.Conflict, interrupted.StatusCode);
        Assert.Contains("cancelled", (await interrupted.Json()).GetProperty("detail").GetString());
        var idle = await (await http.GetAsync("sdapi/v1/progress")).Json();
        Assert.Equal(0, idle.GetProperty("progress").GetDouble());
        Assert.Equal("", idle.GetProperty("state").GetProperty("job").GetString());

        var sdModels = await (await http.GetAsync("sdapi/v1/sd-models")).Json();
        Assert.Equal("ella-tiny", sdModels[0].GetProperty("model_name").GetString());
        var v1Models = await (await http.GetAsync("v1/models")).Json();
        Assert.Equal("ella-tiny", v1Models.GetProperty("data")[0].GetProperty("id").GetString());
    }

    public static IEnumerable<object?[]> BadRequests() =>
    [
        ["v1/images/generations", "{\"prompt\": \"x\",", null, "invalid_json"],
        ["v1/images/generations", "[1, 2]", null, "invalid_json"],
        ["v1/images/generations", "{}", "prompt", "missing_required_parameter"],
        ["v1/images/generations", "{\"prompt\": \"   \"}", "prompt", "missing_required_parameter"],
        ["v1/images/generations", "{\"prompt\": 5}", "prompt", "invalid_type"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"size\": \"60x64\"}", "size", "invalid_value"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"size\": \"big\"}", "size", "invalid_value"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"size\": \"2048x2048\"}", "size", "invalid_value"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"steps\": 0}", "steps", "integer_out_of_range"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"steps\": 151}", "steps", "integer_out_of_range"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"steps\": 2.5}", "steps", "invalid_type"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"n\": 0}", "n", "integer_out_of_range"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"n\": 9}", "n", "integer_out_of_range"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"scheduler\": \"heun\"}", "scheduler", "invalid_value"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"mode\": \"t5\"}", "mode", "invalid_value"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"response_format\": \"png\"}", "response_format", "invalid_value"],
        ["v1/images/generations", "{\"prompt\": \"x\", \"guidance_scale\": -1}", "guidance_scale", "number_out_of_range"],
        ["v1/images/generations", "{\"prompt\": \"" + new string('a', 4001) + "\"}", "prompt", "string_above_max_length"],
        ["v1/jobs", "{\"prompt\": \"x\", \"steps\": 999}", "steps", "integer_out_of_range"],
        ["sdapi/v1/txt2img", "{\"steps\": 2}", "prompt", "missing_required_parameter"],
        ["sdapi/v1/txt2img", "{\"prompt\": \"x\", \"width\": 100}", "width", "invalid_value"],
        ["sdapi/v1/txt2img", "{\"prompt\": \"x\", \"height\": 30}", "height", "invalid_value"],
        ["sdapi/v1/txt2img", "{\"prompt\": \"x\", \"sampler_name\": \"Heun\"}", "sampler_name", "invalid_value"],
        ["sdapi/v1/txt2img", "{\"prompt\": \"x\", \"sampler_name\": \"Euler a\", \"scheduler\": \"Karras\"}", "sampler_name", "invalid_value"],
        ["sdapi/v1/txt2img", "{\"prompt\": \"x\", \"batch_size\": 9}", "batch_size", "integer_out_of_range"],
        ["sdapi/v1/txt2img", "{\"prompt\": \"x\", \"cfg_scale\": \"high\"}", "cfg_scale", "invalid_type"],
    ];

    [Fact]
    public async Task Bad_input_gets_400_naming_the_field_and_the_server_carries_on()
    {
        // A 1 MiB body limit (the default, 32 MiB, leaves room for images) so that the 413 case below stays small.
        await using var server = await models.StartAsync(TinyModels.Options(o => o with { MaxBodyBytes = 1 << 20 }));
        using var http = server.Client();
        foreach (var row in BadRequests())
        {
            string path = (string)row[0]!, body = (string)row[1]!;
            var response = await http.PostJson(path, body);
            string text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{path} {body[..Math.Min(60, body.Length)]}: {(int)response.StatusCode} {text}");
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.True(row[2] == null ? error.GetProperty("param").ValueKind == JsonValueKind.Null : error.GetProperty("param").GetString() == (string)row[2]!, $"{body}: {text}");
            Assert.Equal((string)row[3]!, error.GetProperty("code").GetString());
            if (row[2] is string param) Assert.Contains(param, error.GetProperty("message").GetString());
        }
        // A body over the limit: 413.
        var huge = await http.PostJson("v1/images/generations", "{\"prompt\": \"" + new string('a', (int)server.Options.MaxBodyBytes) + "\"}");
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, huge.StatusCode);
        Assert.Equal("request_too_large", (await huge.Json()).GetProperty("error").GetProperty("code").GetString());
        // Nothing was queued or run, and the next good request works.
        Assert.Equal(0, server.Metrics.Jobs.WithLabels("succeeded").Value + server.Metrics.Jobs.WithLabels("failed").Value);
        Assert.Equal(HttpStatusCode.OK, (await http.PostJson("v1/images/generations", new { prompt = "fine" })).StatusCode);
    }

    [Fact]
    public async Task Mode_that_needs_a_missing_component_is_400_naming_mode()
    {
        using var noClip = EllaPipeline.Load(models.Load with { LoadClip = false });
        await using var server = EllaServer.Create(TinyModels.Options(), () => noClip, ownsPipeline: false);
        await server.StartAsync();
        Assert.True(await server.Queue.Ready);
        using var http = server.Client();
        var response = await http.PostJson("v1/images/generations", new { prompt = "x", mode = "clip" });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("mode", (await response.Json()).GetProperty("error").GetProperty("param").GetString());
    }

    [Fact]
    public async Task Api_key_guards_every_api_route_but_health()
    {
        await using var server = await models.StartAsync(TinyModels.Options(o => o with { ApiKey = "secret" }));
        using var none = server.Client();
        using var wrong = server.Client("wrong");
        foreach (var (method, path) in new[] { ("POST", "v1/images/generations"), ("GET", "v1/models"), ("POST", "sdapi/v1/txt2img"), ("GET", "sdapi/v1/progress"), ("GET", "metrics"), ("GET", "v1/jobs"), ("POST", "v1/jobs") })
            foreach (var http in new[] { none, wrong })
            {
                var response = method == "GET" ? await http.GetAsync(path) : await http.PostJson(path, new { prompt = "x" });
                Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"{method} {path}: {response.StatusCode}");
                Assert.Equal("invalid_api_key", (await response.Json()).GetProperty("error").GetProperty("code").GetString());
            }
        var health = await none.GetAsync("health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.True((await health.Json()).GetProperty("ready").GetBoolean());
        Assert.Equal(HttpStatusCode.OK, (await none.GetAsync("")).StatusCode); // the page itself asks for the key
        using var good = server.Client("secret");
        Assert.Equal(HttpStatusCode.OK, (await good.GetAsync("v1/models")).StatusCode);
    }

    [Fact]
    public async Task Job_timeout_cancels_a_long_job_with_504()
    {
        await using var server = await models.StartAsync(TinyModels.Options(o => o with { JobTimeout = TimeSpan.FromMilliseconds(300) }));
        using var http = server.Client();
        var response = await http.PostJson("v1/images/generations", new { prompt = "slow", steps = 150 });
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("job_timeout", (await response.Json()).GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(1, server.Metrics.Jobs.WithLabels("timeout").Value);
        Assert.Equal(HttpStatusCode.OK, (await http.PostJson("v1/images/generations", new { prompt = "quick", steps = 1 })).StatusCode);
    }
}
