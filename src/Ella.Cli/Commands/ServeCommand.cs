using System.CommandLine;
using System.Net;
using Ella.Pipelines;
using Ella.Server;

namespace Ella.Cli.Commands;

/// <summary><c>ella serve</c>: the OpenAI and Automatic1111 image APIs, jobs with progress events, and a web page.</summary>
public static class ServeCommand
{
    public static Command Create(CliContext ctx)
    {
        var o = new PipelineCliOptions();
        var host = new Option<string>("--host") { Description = "Address to bind (loopback by default; 0.0.0.0 = every interface, an explicit choice)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port)", DefaultValueFactory = _ => 7860 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require 'Authorization: Bearer KEY' on every API call (env ELLA_API_KEY); /health stays open" };
        var maxQueue = new Option<int>("--max-queue") { Description = "Jobs that may wait behind the running one; more get 429 + Retry-After", DefaultValueFactory = _ => 16 };
        var jobTimeout = new Option<double>("--job-timeout") { Description = "Seconds a job may run before it is cancelled", DefaultValueFactory = _ => 600 };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Largest width × height of one image", DefaultValueFactory = _ => 1024 * 1024 };
        var shutdownTimeout = new Option<double>("--shutdown-timeout") { Description = "Seconds the running job may take to finish on SIGTERM before it is cancelled", DefaultValueFactory = _ => 30 };
        var outputDir = new Option<string?>("--output-dir") { Description = "Also keep every generated PNG here (<job id>-<i>.png)" };
        var negative = new Option<string>("--negative-prompt") { Description = "Default negative prompt of requests that give none", DefaultValueFactory = _ => "" };
        var loraDir = new Option<string?>("--lora-dir") { Description = "Folder of LoRA files (name.safetensors) that requests may use: <lora:name:0.8> prompt tags, a 'loras' field, GET /sdapi/v1/loras" };
        var command = new Command("serve", "Serve the OpenAI and Automatic1111 image APIs and a web page over one loaded pipeline")
        {
            host, port, apiKey, maxQueue, jobTimeout, maxPixels, shutdownTimeout, outputDir, negative, loraDir,
        };
        o.AddTo(command);
        command.SetAction(p => Run(ctx, o, p, new ServerOptions
        {
            Host = p.GetValue(host)!, Port = p.GetValue(port),
            ApiKey = p.GetValue(apiKey) ?? (Environment.GetEnvironmentVariable("ELLA_API_KEY") is { Length: > 0 } k ? k : null),
            MaxQueue = p.GetValue(maxQueue), JobTimeout = Seconds(p.GetValue(jobTimeout), "--job-timeout"), MaxPixels = p.GetValue(maxPixels),
            ShutdownTimeout = Seconds(p.GetValue(shutdownTimeout), "--shutdown-timeout", allowZero: true), OutputDir = p.GetValue(outputDir),
            DTypeName = p.GetValue(o.DType)!,
        }, p.GetValue(negative)!, p.GetValue(loraDir)));
        return command;
    }

    static TimeSpan Seconds(double value, string flag, bool allowZero = false) =>
        double.IsFinite(value) && (value > 0 || (allowZero && value == 0)) ? TimeSpan.FromSeconds(value)
            : throw new EllaException($"{flag} must be a positive number of seconds, got {value}");

    static int Run(CliContext ctx, PipelineCliOptions o, ParseResult p, ServerOptions server, string negative, string? loraDir)
    {
        if (loraDir != null && !Directory.Exists(loraDir)) throw new EllaException($"--lora-dir {loraDir}: folder not found");
        if (!(server.Host == "localhost" || IPAddress.TryParse(server.Host, out _)))
            throw new EllaException($"--host {server.Host}: not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1) or localhost");
        if (server.Port is < 0 or > 65535) throw new EllaException($"--port must be 0–65535, got {server.Port}");
        if (server.MaxQueue < 1) throw new EllaException($"--max-queue must be at least 1, got {server.MaxQueue}");
        if (server.MaxPixels < 64) throw new EllaException($"--max-pixels must be at least 64, got {server.MaxPixels}");

        var mode = GenerationModes.Parse(p.GetValue(o.Mode)!);
        // Without model flags or variables: the shapes world (its connector when it has one, and its own CLIP).
        var world = o.World(p);
        bool ellaGiven = world?.HasConnector ?? (p.GetValue(o.Ella) != null || Environment.GetEnvironmentVariable("ELLA_ELLA") is { Length: > 0 });
        var modes = ellaGiven ? new[] { mode, GenerationMode.Ella } : [mode];
        var load = o.LoadOptions(p, modes);
        load = load with { LoadClip = load.LoadClip || HasClip(load.StableDiffusion, load.ClipTokenizer) };
        var defaults = o.Request(p, [], negative, mode) with { LoraDirectory = loraDir == null ? null : Path.GetFullPath(loraDir) };
        server = server with
        {
            Defaults = defaults,
            ModelId = world != null ? "shapes-world"
                : load.Ella != null ? Path.GetFileNameWithoutExtension(ModelLocator.EllaFile(load.Ella)) : Path.GetFileNameWithoutExtension(Path.GetFullPath(load.StableDiffusion).TrimEnd('/')),
        };
        if ((long)defaults.Width * defaults.Height > server.MaxPixels)
            throw new EllaException($"--width × --height ({defaults.Width}×{defaults.Height}) exceeds --max-pixels {server.MaxPixels}");

        var app = EllaServer.Create(server, () => EllaPipeline.Load(load, m => ctx.Error.WriteLine(m)));
        try
        {
            app.StartAsync().GetAwaiter().GetResult();
            if (server.Host is "0.0.0.0" or "::")
                ctx.Error.WriteLine("warning: listening on every network interface (--host " + server.Host + ")" + (server.ApiKey == null ? " without an API key" : ""));
            ctx.Out.WriteLine($"ella serve: listening on {app.BaseAddress} (model {server.ModelId}; loading…)");
            ctx.Out.Flush();
            var shutdown = app.WaitForShutdownAsync();
            if (Task.WhenAny(app.Queue.Ready, shutdown).GetAwaiter().GetResult() == app.Queue.Ready)
            {
                if (!app.Queue.Ready.Result) throw new EllaException(app.Queue.LoadError ?? "loading the models failed");
                ctx.Out.WriteLine($"ella serve: ready on {app.BaseAddress}");
                ctx.Out.Flush();
            }
            shutdown.GetAwaiter().GetResult();
            ctx.Out.WriteLine("ella serve: stopped");
            return EllaCli.ExitOk;
        }
        finally
        {
            app.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>Whether the Stable Diffusion model brings a CLIP text encoder (then the clip and ella+clip modes are served too).</summary>
    static bool HasClip(string sd, string? clipTokenizer)
    {
        if (Directory.Exists(sd)) return Directory.Exists(Path.Combine(sd, "text_encoder")) && (clipTokenizer != null || Directory.Exists(Path.Combine(sd, "tokenizer")));
        return clipTokenizer != null || Directory.Exists(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(sd))!, "tokenizer"));
    }
}
