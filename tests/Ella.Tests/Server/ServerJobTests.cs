using System.Net;
using System.Text.Json;

namespace Ella.Tests.Server;

/// <summary>Jobs: Server-Sent Events, cancellation, the bounded queue, disconnects, metrics.</summary>
public sealed class ServerJobTests(TinyModels models) : IClassFixture<TinyModels>
{
    static async Task<string> Submit(HttpClient http, object body)
    {
        var response = await http.PostJson("v1/jobs", body);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, await response.Content.ReadAsStringAsync());
        return (await response.Json()).GetProperty("id").GetString()!;
    }

    static async Task<JsonElement> WaitFor(HttpClient http, string id, Func<JsonElement, bool> condition)
    {
        for (int i = 0; i < 2000; i++)
        {
            var job = await (await http.GetAsync($"v1/jobs/{id}")).Json();
            if (condition(job)) return job;
            await Task.Delay(20);
        }
        throw new TimeoutException($"job {id} never reached the state");
    }

    [Fact]
    public async Task Events_stream_queued_started_each_step_and_done_with_the_result()
    {
        await using var server = await models.StartAsync();
        using var http = server.Client();
        // A 4-step job on the tiny models can finish before a listener connects (a late listener gets only the
        // outcome). So the job waits behind a long one, and the long one is cancelled once the listener has its
        // first event: every event of the job is then seen.
        string blocker = await Submit(http, new { prompt = "long", steps = 150 });
        await WaitFor(http, blocker, j => j.GetProperty("step").GetInt32() > 0);
        string id = await Submit(http, new { prompt = "a green tree", steps = 4, seed = 9 });
        bool released = false;
        var events = await http.ReadEvents(id, async (type, _) =>
        {
            if (released) return;
            released = true;
            Assert.Equal(HttpStatusCode.OK, (await http.DeleteAsync($"v1/jobs/{blocker}")).StatusCode);
        });
        var types = events.Select(e => e.Type).ToList();
        Assert.Equal("queued", types[0]);
        Assert.Contains("started", types);
        var steps = events.Where(e => e.Type == "step").Select(e => e.Data.GetProperty("step").GetInt32()).ToList();
        Assert.True(steps.Count > 0 && steps.SequenceEqual(steps.Order()) && steps.Distinct().Count() == steps.Count, string.Join(",", types));
        Assert.Equal(4, steps[^1]);
        Assert.All(events.Where(e => e.Type == "step"), e => Assert.Equal(4, e.Data.GetProperty("total_steps").GetInt32()));
        var (lastType, done) = events[^1];
        Assert.Equal("done", lastType);
        Assert.Equal(9, done.GetProperty("seed").GetInt64());
        var item = done.GetProperty("data")[0];
        Assert.Contains("Seed: 9", item.GetProperty("parameters").GetString());
        Assert.Equal("image/png", (await http.GetAsync(item.GetProperty("url").GetString())).Content.Headers.ContentType?.MediaType);
        // A late listener gets the outcome at once.
        var late = await http.ReadEvents(id);
        Assert.Equal("done", Assert.Single(late).Type);
    }

    [Fact]
    public async Task Queue_positions_429_when_full_and_delete_cancels_queued_and_running_jobs()
    {
        await using var server = await models.StartAsync(TinyModels.Options(o => o with { MaxQueue = 1 }));
        using var http = server.Client();
        string running = await Submit(http, new { prompt = "long", steps = 150 });
        await WaitFor(http, running, j => j.GetProperty("step").GetInt32() > 0);
        string queued = await Submit(http, new { prompt = "waiting", steps = 2 });
        var queuedEvents = http.ReadEvents(queued);
        Assert.Equal(1, (await (await http.GetAsync($"v1/jobs/{queued}")).Json()).GetProperty("position").GetInt32());

        var full = await http.PostJson("v1/images/generations", new { prompt = "one too many" });
        Assert.Equal((HttpStatusCode)429, full.StatusCode);
        Assert.True(full.Headers.RetryAfter?.Delta?.TotalSeconds >= 1, "Retry-After");
        Assert.Equal("queue_full", (await full.Json()).GetProperty("error").GetProperty("code").GetString());
        Assert.Equal((HttpStatusCode)429, (await http.PostJson("sdapi/v1/txt2img", new { prompt = "also too many" })).StatusCode);

        var deleted = await (await http.DeleteAsync($"v1/jobs/{queued}")).Json();
        Assert.True(deleted.GetProperty("cancelled").GetBoolean());
        var events = await queuedEvents;
        Assert.Equal("queued", events[0].Type);
        Assert.Equal("cancelled", events[^1].Type);
        Assert.DoesNotContain(events, e => e.Type is "started" or "step");

        await http.DeleteAsync($"v1/jobs/{running}");
        var cancelled = await WaitFor(http, running, j => j.GetProperty("state").GetString() != "running");
        Assert.Equal("cancelled", cancelled.GetProperty("state").GetString());
        Assert.True(cancelled.GetProperty("step").GetInt32() < 150);
        Assert.False((await (await http.DeleteAsync($"v1/jobs/{running}")).Json()).GetProperty("cancelled").GetBoolean());
        Assert.Equal(HttpStatusCode.NotFound, (await http.DeleteAsync("v1/jobs/job-nope")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.PostJson("v1/images/generations", new { prompt = "after" })).StatusCode);

        string metrics = await http.GetStringAsync("metrics");
        Assert.Contains("ella_jobs_total{outcome=\"rejected\"} 2", metrics);
        Assert.Contains("ella_jobs_total{outcome=\"cancelled\"} 2", metrics);
        Assert.Contains("ella_jobs_total{outcome=\"succeeded\"} 1", metrics);
        Assert.Contains("ella_images_generated_total 1", metrics);
        Assert.Contains("ella_queue_depth 0", metrics);
        Assert.Contains("ella_step_duration_seconds_bucket{le=", metrics);
        Assert.Contains("ella_job_duration_seconds_count 2", metrics);
    }

    [Fact]
    public async Task A_client_that_disconnects_cancels_its_job_and_frees_the_worker()
    {
        await using var server = await models.StartAsync();
        using var http = server.Client();
        // 1. A synchronous OpenAI request whose client gives up mid-generation.
        using (var giveUp = new CancellationTokenSource())
        {
            var request = http.PostJson("v1/images/generations", new { prompt = "abandoned", steps = 150 }, giveUp.Token);
            string id = await WaitForRunning(http);
            giveUp.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
            var job = await WaitFor(http, id, j => j.GetProperty("state").GetString() != "running");
            Assert.Equal("cancelled", job.GetProperty("state").GetString());
            Assert.Contains("disconnected", job.GetProperty("reason").GetString());
        }
        // 2. A job of POST /v1/jobs whose only event stream closes.
        string owned = await Submit(http, new { prompt = "watched", steps = 150 });
        using (var close = new CancellationTokenSource())
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => http.ReadEvents(owned, async (type, _) =>
            {
                if (type == "step") await close.CancelAsync();
            }, close.Token));
        }
        Assert.Equal("cancelled", (await WaitFor(http, owned, j => j.GetProperty("state").GetString() is not ("running" or "queued"))).GetProperty("state").GetString());
        // The worker is free: the next job runs at once.
        var next = await http.PostJson("v1/images/generations", new { prompt = "next", steps = 1 });
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        for (int i = 0; i < 500 && server.Queue.Running != null; i++) await Task.Delay(10); // the worker clears it just after answering
        Assert.Null(server.Queue.Running);
    }

    static async Task<string> WaitForRunning(HttpClient http)
    {
        for (int i = 0; i < 2000; i++)
        {
            var list = await (await http.GetAsync("v1/jobs")).Json();
            foreach (var j in list.GetProperty("data").EnumerateArray())
                if (j.GetProperty("state").GetString() == "running" && j.GetProperty("step").GetInt32() > 0) return j.GetProperty("id").GetString()!;
            await Task.Delay(20);
        }
        throw new TimeoutException("no job started");
    }
}
