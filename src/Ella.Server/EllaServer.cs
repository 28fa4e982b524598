using System.Reflection;
using Ella.Pipelines;
using Ella.Server.Api;
using Ella.Server.Jobs;
using Ella.Server.Metrics;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace Ella.Server;

/// <summary>
/// <c>ella serve</c>: ASP.NET Core (Kestrel) over one <see cref="EllaPipeline"/>. Routes: the OpenAI Images API
/// (<see cref="OpenAiImagesApi"/>), the Automatic1111 API (<see cref="Automatic1111Api"/>), jobs with Server-Sent
/// Events (<see cref="JobsApi"/>), /v1/files, /health, /metrics and the web page at /.
/// </summary>
public sealed class EllaServer : IAsyncDisposable
{
    readonly WebApplication _app;
    bool _started;

    public ServerOptions Options { get; }
    public JobQueue Queue { get; }
    public ServerMetrics Metrics { get; }
    public FileStore Files { get; }
    /// <summary>Where it listens (after <see cref="StartAsync"/>), e.g. http://127.0.0.1:7860/.</summary>
    public Uri? BaseAddress { get; private set; }

    EllaServer(ServerOptions options, Func<EllaPipeline> load, bool ownsPipeline)
    {
        Options = options;
        Metrics = new ServerMetrics();
        Files = new FileStore(options.FileTtl, options.MaxFiles);
        Queue = new JobQueue(options, Metrics, Files, load, ownsPipeline);
        if (options.OutputDir != null) Directory.CreateDirectory(options.OutputDir);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ApplicationName = typeof(EllaServer).Assembly.GetName().Name });
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://{(options.Host.Contains(':') ? $"[{options.Host}]" : options.Host)}:{options.Port}");
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.AddServerHeader = false;
        });
        // Our own stopping step runs first (stop taking jobs, let the running one finish); this covers it with a margin.
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.ShutdownTimeout + TimeSpan.FromSeconds(40));
        builder.Services.AddSingleton<IHostedService>(new QueueLifetime(Queue, options.ShutdownTimeout));
        _app = builder.Build();

        var s = new ServerContext(options, Queue, Files, Metrics, DateTimeOffset.UtcNow);
        _app.Use(async (ctx, next) =>
        {
            if (options.ApiKey is { } key && Http.NeedsKey(ctx.Request.Path) && !Http.HasKey(ctx.Request, key))
            {
                await Http.WriteError(ctx, new ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", null, "invalid_api_key"),
                    ctx.Request.Path.StartsWithSegments("/sdapi"));
                return;
            }
            await next(ctx);
        });
        OpenAiImagesApi.Map(_app, s);
        OpenAiImageEditsApi.Map(_app, s);
        Automatic1111Api.Map(_app, s);
        JobsApi.Map(_app, s);
        _app.MapGet("/v1/files/{name}", Http.Handle(async ctx =>
        {
            var png = Files.Get((string)ctx.Request.RouteValues["name"]!) ?? throw new ApiError(404, "no such file (files expire after a while)", null, "file_not_found");
            ctx.Response.ContentType = "image/png";
            await ctx.Response.Body.WriteAsync(png, ctx.RequestAborted);
        }));
        _app.MapGet("/health", ctx => Health(ctx, detail: true));
        _app.MapGet("/health/live", ctx => ctx.Response.WriteAsJsonAsync(new { status = "ok", live = true }, Http.Json));
        _app.MapGet("/health/ready", ctx => Health(ctx, detail: false));
        _app.MapMetrics("/metrics", Metrics.Registry);
        _app.MapGet("/", ctx => StaticFile(ctx, "index.html"));
        _app.MapGet("/static/{name}", ctx => StaticFile(ctx, (string)ctx.Request.RouteValues["name"]!));
    }

    /// <summary>A server that loads its models on its worker thread (/health reports ready once they are loaded).</summary>
    public static EllaServer Create(ServerOptions options, Func<EllaPipeline> load, bool ownsPipeline = true)
    {
        if (options.MaxQueue < 1) throw new EllaException($"--max-queue must be at least 1, got {options.MaxQueue}");
        if (options.MaxPixels < 64) throw new EllaException($"--max-pixels must be at least 64, got {options.MaxPixels}");
        if (options.JobTimeout <= TimeSpan.Zero) throw new EllaException("--job-timeout must be positive");
        if (options.ShutdownTimeout < TimeSpan.Zero) throw new EllaException("--shutdown-timeout must be ≥ 0");
        return new EllaServer(options, load, ownsPipeline);
    }

    /// <summary>Starts listening (the models load in the background).</summary>
    public async Task StartAsync(CancellationToken cancellation = default)
    {
        await _app.StartAsync(cancellation);
        _started = true;
        BaseAddress = new Uri(_app.Urls.First().TrimEnd('/') + "/");
    }

    /// <summary>Completes when the host stops (SIGTERM, Ctrl-C or <see cref="StopAsync"/>).</summary>
    public Task WaitForShutdownAsync() => _app.WaitForShutdownAsync();

    public async Task StopAsync()
    {
        if (_started) await _app.StopAsync();
        _started = false;
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        await _app.DisposeAsync();
        Queue.Dispose();
    }

    Task Health(HttpContext ctx, bool detail)
    {
        bool ready = Queue.IsReady && Queue.IsAccepting;
        string status = Queue.LoadError != null ? "failed" : !Queue.IsReady ? "loading" : !Queue.IsAccepting ? "stopping" : "ok";
        ctx.Response.StatusCode = ready ? 200 : 503;
        if (!detail) return ctx.Response.WriteAsJsonAsync(new { status, ready }, Http.Json);
        return ctx.Response.WriteAsJsonAsync(new
        {
            status, live = true, ready, model = Options.ModelId, error = Queue.LoadError,
            queue_depth = Queue.WaitingCount, running = Queue.Running?.Id,
        }, Http.Json);
    }

    static readonly Assembly Self = typeof(EllaServer).Assembly;

    static async Task StaticFile(HttpContext ctx, string name)
    {
        using var stream = Self.GetManifestResourceStream("wwwroot/" + name);
        if (stream == null || name.Contains('/') || name.Contains(".."))
        {
            ctx.Response.StatusCode = 404;
            return;
        }
        ctx.Response.ContentType = Path.GetExtension(name) switch
        {
            ".html" => "text/html; charset=utf-8",
            ".js" => "text/javascript; charset=utf-8",
            ".css" => "text/css; charset=utf-8",
            ".svg" => "image/svg+xml",
            ".png" => "image/png",
            _ => "application/octet-stream",
        };
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Response.Headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'";
        await stream.CopyToAsync(ctx.Response.Body, ctx.RequestAborted);
    }

    /// <summary>Starts the worker with the host; on shutdown stops taking jobs and lets the running one finish in time.</summary>
    sealed class QueueLifetime(JobQueue queue, TimeSpan grace) : IHostedLifecycleService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            queue.Start();
            return Task.CompletedTask;
        }

        public Task StoppingAsync(CancellationToken cancellationToken) => queue.StopAsync(grace);
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
