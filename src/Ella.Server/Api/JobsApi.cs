using System.Text.Json;
using Ella.Server.Jobs;
using Microsoft.AspNetCore.Http.Features;

namespace Ella.Server.Api;

/// <summary>
/// Jobs: <c>POST /v1/jobs</c> (the OpenAI request body; answers 202 with the id at once), <c>GET /v1/jobs</c>,
/// <c>GET /v1/jobs/{id}</c>, <c>GET /v1/jobs/{id}/events</c> (Server-Sent Events: queued, started, step, done, error,
/// cancelled) and <c>DELETE /v1/jobs/{id}</c>. A job made by POST /v1/jobs belongs to its event streams: when the last
/// one disconnects before the job ends, the job is cancelled. Every generation of the other APIs is a job too.
/// </summary>
public static class JobsApi
{
    public static void Map(WebApplication app, ServerContext s)
    {
        app.MapPost("/v1/jobs", Http.Handle(async ctx =>
        {
            var f = await JsonFields.ReadAsync(ctx.Request, ctx.RequestAborted);
            var spec = OpenAiImagesApi.Parse(f, s.Options, "url");
            spec.Check(s.Options, s.Queue.Pipeline, imageParam: "init_image");
            var job = s.NewJob(spec, "jobs", ctx);
            s.Queue.Submit(job);
            ctx.Response.StatusCode = StatusCodes.Status202Accepted;
            ctx.Response.Headers.Location = $"/v1/jobs/{job.Id}";
            await ctx.Response.WriteAsJsonAsync(Status(job), Http.Json);
        }));
        app.MapGet("/v1/jobs", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(new { @object = "list", data = s.Queue.Jobs.Select(Status) }, Http.Json)));
        app.MapGet("/v1/jobs/{id}", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(Status(Find(s, ctx)), Http.Json)));
        app.MapDelete("/v1/jobs/{id}", Http.Handle(ctx =>
        {
            var job = Find(s, ctx);
            bool cancelled = job.Cancel("cancelled by DELETE /v1/jobs/" + job.Id);
            return ctx.Response.WriteAsJsonAsync(new { id = job.Id, cancelled, state = Name(job.State) }, Http.Json);
        }));
        app.MapGet("/v1/jobs/{id}/events", Http.Handle(ctx => Events(Find(s, ctx), ctx)));
    }

    static ImageJob Find(ServerContext s, HttpContext ctx)
    {
        string id = (string)ctx.Request.RouteValues["id"]!;
        return s.Queue.Find(id) ?? throw new ApiError(404, $"no job '{id}' (finished jobs are kept for a while only)", "id", "job_not_found");
    }

    public static string Name(JobState state) => state.ToString().ToLowerInvariant();

    static object Status(ImageJob job) => new
    {
        id = job.Id, @object = "image.job", state = Name(job.State), created = job.Created.ToUnixTimeSeconds(),
        position = job.Position, step = job.Step, total_steps = job.TotalSteps, events_url = $"/v1/jobs/{job.Id}/events",
        data = job.Result?.Images.Select(job.DataItem), seed = job.Result?.Seed, error = job.Error?.Body().Error, reason = job.CancelReason,
    };

    static async Task Events(ImageJob job, HttpContext ctx)
    {
        ctx.Response.Headers.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        ctx.Response.Headers["X-Accel-Buffering"] = "no";
        ctx.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var reader = job.Subscribe();
        var aborted = ctx.RequestAborted;
        try
        {
            await ctx.Response.WriteAsync($": job {job.Id}\n\n", aborted);
            await ctx.Response.Body.FlushAsync(aborted);
            while (true)
            {
                // A comment every 15 s keeps proxies from closing an idle stream.
                using var heartbeat = CancellationTokenSource.CreateLinkedTokenSource(aborted);
                heartbeat.CancelAfter(TimeSpan.FromSeconds(15));
                bool more;
                try { more = await reader.WaitToReadAsync(heartbeat.Token); }
                catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
                {
                    await ctx.Response.WriteAsync(": keep-alive\n\n", aborted);
                    await ctx.Response.Body.FlushAsync(aborted);
                    continue;
                }
                if (!more) break;
                while (reader.TryRead(out var e))
                    await ctx.Response.WriteAsync($"event: {e.Type}\ndata: {JsonSerializer.Serialize(e.Data, Http.Json)}\n\n", aborted);
                await ctx.Response.Body.FlushAsync(aborted);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException) { }
        finally
        {
            int left = job.Unsubscribe(reader);
            if (aborted.IsCancellationRequested && left == 0 && job.Api == "jobs") job.Cancel("the client disconnected");
        }
    }
}
