using System.Diagnostics;
using System.Net;
using System.Collections.Concurrent;
using Ella.Diagnostics;
using Ella.Server.Metrics;
using Xunit.Abstractions;

namespace Ella.Tests.Server;

/// <summary>
/// A bounded load test on loopback: 8 concurrent clients, 100 requests (1 step, 32×32) between 20 and 80 more of the same mix, every 10th a long job its
/// client cancels midway. Every request must end as success, 429 or cancelled, none lost or duplicated; the server
/// must still answer; and memory must not grow with the number of requests (RSS after 200 within 10 % of after 20).
/// </summary>
public sealed class ServerLoadTests(TinyModels models, ITestOutputHelper output) : IClassFixture<TinyModels>
{
    const int Clients = 8;

    enum Outcome { Success, Rejected, Cancelled }

    sealed record Sample(int Index, Outcome Outcome, double Seconds, string? JobId, long? Seed);

    static async Task<List<Sample>> Run(HttpClient http, int first, int count, bool cancelSome)
    {
        var samples = new ConcurrentBag<Sample>();
        int next = first - 1;
        async Task Client()
        {
            while (true)
            {
                int i = Interlocked.Increment(ref next);
                if (i >= first + count) return;
                bool cancel = cancelSome && i % 10 == 3;
                using var cts = new CancellationTokenSource();
                if (cancel) cts.CancelAfter(TimeSpan.FromMilliseconds(150));
                var clock = Stopwatch.StartNew();
                try
                {
                    var response = await http.PostJson("v1/images/generations", new { prompt = $"request {i}", seed = i, steps = cancel ? 150 : 1, size = "32x32" }, cts.Token);
                    if (response.StatusCode == (HttpStatusCode)429) { samples.Add(new Sample(i, Outcome.Rejected, clock.Elapsed.TotalSeconds, null, null)); continue; }
                    Assert.True(response.StatusCode == HttpStatusCode.OK, $"request {i}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                    var json = await response.Json();
                    samples.Add(new Sample(i, Outcome.Success, clock.Elapsed.TotalSeconds, json.GetProperty("job_id").GetString(), json.GetProperty("seed").GetInt64()));
                }
                catch (OperationCanceledException) when (cancel)
                {
                    samples.Add(new Sample(i, Outcome.Cancelled, clock.Elapsed.TotalSeconds, null, null));
                }
            }
        }
        await Task.WhenAll(Enumerable.Range(0, Clients).Select(_ => Task.Run(Client)));
        return [.. samples];
    }

    static double Percentile(List<double> sorted, double p) => sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(p * sorted.Count) - 1)];

    [Fact]
    public async Task Eight_clients_hundred_requests_all_accounted_for()
    {
        await using var server = await models.StartAsync(TinyModels.Options(o => o with { Defaults = o.Defaults with { Steps = 1, Width = 32, Height = 32 } }));
        using var http = server.Client();
        http.Timeout = Timeout.InfiniteTimeSpan; // the server's --job-timeout bounds each job
        // The first 20 requests of the same mix, then the memory baseline.
        Assert.All(await Run(http, 0, 20, cancelSome: true), s => Assert.NotEqual(Outcome.Rejected, s.Outcome));
        double rss20 = SettledRss();
        double Count(string outcome) => server.Metrics.Jobs.WithLabels(outcome).Value;
        var before = ServerMetrics.Outcomes.ToDictionary(o => o, Count);

        var wall = Stopwatch.StartNew();
        var samples = await Run(http, 20, 100, cancelSome: true);
        double seconds = wall.Elapsed.TotalSeconds;

        // Every request has exactly one outcome, and each success is its own job with its own seed.
        Assert.Equal(Enumerable.Range(20, 100), samples.Select(s => s.Index).Order());
        var successes = samples.Where(s => s.Outcome == Outcome.Success).ToList();
        Assert.All(successes, s => Assert.Equal(s.Index, s.Seed));
        Assert.Equal(successes.Count, successes.Select(s => s.JobId).Distinct().Count());
        int cancelled = samples.Count(s => s.Outcome == Outcome.Cancelled), rejected = samples.Count(s => s.Outcome == Outcome.Rejected);
        var latencies = successes.Select(s => s.Seconds).Order().ToList();
        output.WriteLine($"load: {Clients} clients, 100 requests: {successes.Count} ok, {rejected} × 429, {cancelled} cancelled in {seconds:F1} s; " +
                         $"throughput {successes.Count / seconds:F1} images/s; latency p50 {Percentile(latencies, 0.5) * 1000:F0} ms, p95 {Percentile(latencies, 0.95) * 1000:F0} ms");
        Assert.Equal(10, cancelled);
        // The server agrees: as many jobs succeeded as clients got images; nothing failed or timed out.
        await WaitUntil(() => server.Queue.Running == null && server.Queue.WaitingCount == 0);
        Assert.Equal(successes.Count, Count("succeeded") - before["succeeded"]);
        Assert.Equal(rejected, Count("rejected") - before["rejected"]);
        Assert.InRange(Count("cancelled") - before["cancelled"], 0, cancelled);
        Assert.Equal(0, Count("failed") + Count("timeout"));
        // Still answers.
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("health")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await http.PostJson("v1/images/generations", new { prompt = "still here" })).StatusCode);

        // Memory after 200 requests (20 + 100 + 80), reported here; asserted by the test below.
        await Run(http, 120, 80, cancelSome: true);
        double rss200 = SettledRss();
        output.WriteLine($"RSS after 20 requests {rss20:F0} MiB, after 200 {rss200:F0} MiB ({(rss200 / rss20 - 1) * 100:+0.0;-0.0} %)");
    }

    /// <summary>
    /// Memory in a server of its own (a child <c>ella serve</c> process, so the test process's other work does not
    /// count): RSS after 200 requests within 10 % of after 20, both read after the queue drained and a second of rest.
    /// </summary>
    [Fact]
    public async Task Memory_after_200_requests_is_within_10_percent_of_after_20()
    {
        await using var serve = await ServeProcess.StartAsync(models, "--width", "32", "--height", "32", "--steps", "1");
        using var http = new HttpClient { BaseAddress = serve.Url, Timeout = Timeout.InfiniteTimeSpan };
        await Run(http, 0, 20, cancelSome: true);
        double rss20 = await IdleRss(http, serve);
        await Run(http, 20, 180, cancelSome: true);
        double rss200 = await IdleRss(http, serve);
        output.WriteLine($"ella serve (own process): RSS after 20 requests {rss20:F0} MiB, after 200 {rss200:F0} MiB ({(rss200 / rss20 - 1) * 100:+0.0;-0.0} %)");
        Assert.True(rss200 <= rss20 * 1.10, $"RSS grew from {rss20:F0} MiB to {rss200:F0} MiB");
    }

    /// <summary>The child's RSS once its queue is empty (per /sdapi/v1/progress) and it has rested a second.</summary>
    static async Task<double> IdleRss(HttpClient http, ServeProcess serve)
    {
        for (int i = 0; i < 500; i++)
        {
            var p = await (await http.GetAsync("sdapi/v1/progress")).Json();
            if (p.GetProperty("state").GetProperty("job_count").GetInt32() == 0) break;
            await Task.Delay(20);
        }
        await Task.Delay(1000);
        return serve.RssMb();
    }

    /// <summary>RSS after a compacting GC and glibc's malloc_trim: what the process holds, not what allocators keep cached.</summary>
    static double SettledRss()
    {
        System.Runtime.GCSettings.LargeObjectHeapCompactionMode = System.Runtime.GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        try { malloc_trim(0); } catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        var info = GC.GetGCMemoryInfo();
        Console.WriteLine($"settled: rss {ProcessMemory.RssMb():F0} MiB, gc committed {info.TotalCommittedBytes / 1048576.0:F0} MiB, heap {info.HeapSizeBytes / 1048576.0:F0} MiB, threads {System.Diagnostics.Process.GetCurrentProcess().Threads.Count}");
        return ProcessMemory.RssMb();
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    static extern int malloc_trim(nuint pad);

    static async Task WaitUntil(Func<bool> condition)
    {
        for (int i = 0; i < 500 && !condition(); i++) await Task.Delay(20);
        Assert.True(condition());
    }
}
