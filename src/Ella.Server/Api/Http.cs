using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Ella.Server.Jobs;

namespace Ella.Server.Api;

/// <summary>What every endpoint shares: the options, the queue, the files and the metrics.</summary>
public sealed record ServerContext(ServerOptions Options, JobQueue Queue, FileStore Files, Metrics.ServerMetrics Metrics, DateTimeOffset Started)
{
    /// <summary>A job for a validated spec; the pipeline checks the request once more (anything it rejects is a 400).</summary>
    public ImageJob NewJob(ImageSpec spec, string api, HttpContext ctx)
    {
        var request = spec.ToRequest(Options.Defaults);
        if (Queue.Pipeline is { } pipeline)
        {
            try { pipeline.Validate(request); }
            catch (EllaException e) { throw ApiError.BadRequest(e.Message, null); }
        }
        return new ImageJob(spec, request, api, $"{ctx.Request.Scheme}://{ctx.Request.Host}");
    }
}

public static class Http
{
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>Runs a handler; an <see cref="ApiError"/> becomes its JSON error response (A1111 routes add FastAPI's "detail").</summary>
    public static RequestDelegate Handle(Func<HttpContext, Task> handler, bool sdapi = false) => async ctx =>
    {
        try { await handler(ctx); }
        catch (ApiError e) when (!ctx.Response.HasStarted) { await WriteError(ctx, e, sdapi); }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested) { }
    };

    public static Task WriteError(HttpContext ctx, ApiError e, bool sdapi = false)
    {
        ctx.Response.StatusCode = e.Status;
        if (e.RetryAfterSeconds is { } seconds) ctx.Response.Headers.RetryAfter = seconds.ToString();
        if (e.Status == 401) ctx.Response.Headers.WWWAuthenticate = "Bearer";
        return sdapi
            ? ctx.Response.WriteAsJsonAsync(new { error = e.Body().Error, detail = e.Message }, Json)
            : ctx.Response.WriteAsJsonAsync(e.Body(), Json);
    }

    /// <summary>With an API key every API route needs <c>Authorization: Bearer KEY</c>; /health, the page and the
    /// capability URLs under /v1/files/ stay open.</summary>
    public static bool NeedsKey(PathString path) =>
        (path.StartsWithSegments("/v1") && !path.StartsWithSegments("/v1/files")) || path.StartsWithSegments("/sdapi") || path.StartsWithSegments("/metrics");

    public static bool HasKey(HttpRequest request, string key)
    {
        string header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return false;
        var given = Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim());
        var expected = Encoding.UTF8.GetBytes(key);
        return CryptographicOperations.FixedTimeEquals(given, expected);
    }

    /// <summary>Waits for a job the request owns: if the client goes away, the job is cancelled.</summary>
    public static async Task AwaitOwnedJob(HttpContext ctx, ImageJob job)
    {
        using (ctx.RequestAborted.Register(() => job.Cancel("the client disconnected")))
            await job.Completion;
        ctx.RequestAborted.ThrowIfCancellationRequested();
        if (job.State == JobState.Failed) throw job.Error!;
        if (job.State == JobState.Cancelled) throw new ApiError(409, $"job {job.Id} was cancelled: {job.CancelReason}", null, "job_cancelled");
    }
}
