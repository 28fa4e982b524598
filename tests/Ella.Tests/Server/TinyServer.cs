using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.Server;
using Ella.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Ella.Tests.Server;

/// <summary>
/// The tiny fixture models as one pipeline with every mode: the pipeline fixture's UNet/VAE/scheduler, the tiny CLIP
/// text encoder with the real CLIP vocabulary, the tiny FLAN-T5 with its tokenizer and a random 64-wide ELLA connector.
/// Loaded once per test class; each test starts its own server over it on a free loopback port.
/// </summary>
public sealed class TinyModels : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("ella-serve-").FullName;
    public PipelineLoadOptions Load { get; }
    public EllaPipeline Pipeline { get; }

    public TinyModels()
    {
        string sd = Path.Combine(Dir, "sd");
        string model = Fixtures.PathOf("diffusion", "pipeline", "model");
        Directory.CreateDirectory(sd);
        foreach (var sub in new[] { "unet", "vae", "scheduler" }) Directory.CreateSymbolicLink(Path.Combine(sd, sub), Path.Combine(model, sub));
        File.Copy(Path.Combine(model, "model_index.json"), Path.Combine(sd, "model_index.json"));
        Directory.CreateSymbolicLink(Path.Combine(sd, "text_encoder"), Fixtures.PathOf("text", "clip-text"));
        Directory.CreateSymbolicLink(Path.Combine(sd, "tokenizer"), Path.Combine(Fixtures.SharedData, "clip"));
        string t5 = Path.Combine(Dir, "t5");
        Directory.CreateDirectory(t5);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.PathOf("text", "t5", f), Path.Combine(t5, f));
        foreach (var f in new[] { "spiece.model", "tokenizer_config.json", "special_tokens_map.json" }) File.Copy(Fixtures.PathOf("text", "t5-tokenizer", f), Path.Combine(t5, f));
        string ella = Path.Combine(Dir, "ella64.safetensors");
        manual_seed(7);
        using (var c = new EllaConnector(new EllaConnectorConfig { TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 1, Heads = 4, NumLatents = 8, InputDim = 64 }))
            c.Save(ella);
        Load = new PipelineLoadOptions { StableDiffusion = sd, T5 = t5, Ella = ella, LoadClip = true };
        Pipeline = EllaPipeline.Load(Load);
    }

    /// <summary>Defaults of the test servers: 64×64, 2 steps.</summary>
    public static ServerOptions Options(Func<ServerOptions, ServerOptions>? tweak = null)
    {
        var o = new ServerOptions
        {
            Port = 0, ModelId = "ella-tiny", ShutdownTimeout = TimeSpan.FromSeconds(5),
            Defaults = new GenerationRequest { Prompts = [], Width = 64, Height = 64, Steps = 2, GuidanceScale = 7.5 },
        };
        return tweak?.Invoke(o) ?? o;
    }

    public async Task<EllaServer> StartAsync(ServerOptions? options = null)
    {
        var server = EllaServer.Create(options ?? Options(), () => Pipeline, ownsPipeline: false);
        await server.StartAsync();
        Assert.True(await server.Queue.Ready, server.Queue.LoadError);
        return server;
    }

    public void Dispose()
    {
        Pipeline.Dispose();
        try { Directory.Delete(Dir, true); } catch (IOException) { }
    }
}

public static class HttpTestExtensions
{
    public static HttpClient Client(this EllaServer server, string? key = null)
    {
        var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromMinutes(5) };
        if (key != null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    public static Task<HttpResponseMessage> PostJson(this HttpClient http, string path, object body, CancellationToken cancellation = default) =>
        http.PostAsync(path, new StringContent(body as string ?? JsonSerializer.Serialize(body), Encoding.UTF8, "application/json"), cancellation);

    public static async Task<JsonElement> Json(this HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    /// <summary>Reads Server-Sent Events until a terminal one (done, error, cancelled); <paramref name="onEvent"/> sees each as it comes.</summary>
    public static async Task<List<(string Type, JsonElement Data)>> ReadEvents(this HttpClient http, string jobId, Func<string, JsonElement, Task>? onEvent = null, CancellationToken cancellation = default)
    {
        using var response = await http.GetAsync($"v1/jobs/{jobId}/events", HttpCompletionOption.ResponseHeadersRead, cancellation);
        response.EnsureSuccessStatusCode();
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellation));
        var events = new List<(string, JsonElement)>();
        string? type = null;
        while (await reader.ReadLineAsync(cancellation) is { } line)
        {
            if (line.StartsWith("event: ")) type = line["event: ".Length..];
            else if (line.StartsWith("data: "))
            {
                var data = JsonDocument.Parse(line["data: ".Length..]).RootElement;
                events.Add((type!, data));
                if (onEvent != null) await onEvent(type!, data);
                if (type is "done" or "error" or "cancelled") break;
            }
        }
        return events;
    }
}
