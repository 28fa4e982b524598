using System.Collections.Concurrent;
using System.Diagnostics;
using Ella.Imaging;
using Ella.Pipelines;
using Ella.Server.Api;
using Ella.Server.Metrics;

namespace Ella.Server.Jobs;

/// <summary>
/// One worker thread over one pipeline: it loads the models, then runs jobs one at a time in arrival order. The queue
/// of waiting jobs is bounded (<see cref="ServerOptions.MaxQueue"/>); a cancelled waiting job leaves it at once, a
/// running one stops before its next step. Finished jobs stay visible (GET /v1/jobs/{id}) for a while, then are dropped.
/// </summary>
public sealed class JobQueue : IDisposable
{
    const int KeepFinished = 64;

    readonly ServerOptions _options;
    readonly ServerMetrics _metrics;
    readonly FileStore _files;
    readonly Func<EllaPipeline> _load;
    readonly bool _ownsPipeline;
    readonly object _lock = new();
    readonly LinkedList<ImageJob> _waiting = new();
    readonly ConcurrentDictionary<string, ImageJob> _jobs = new();
    readonly Queue<string> _finished = new();
    readonly SemaphoreSlim _signal = new(0, int.MaxValue);
    readonly CancellationTokenSource _stop = new();
    readonly TaskCompletionSource<bool> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    Thread? _thread;
    ImageJob? _running;
    bool _accepting = true;
    double _meanJobSeconds = 1;

    /// <param name="ownsPipeline">dispose the pipeline with the queue (false when the caller shares one)</param>
    public JobQueue(ServerOptions options, ServerMetrics metrics, FileStore files, Func<EllaPipeline> load, bool ownsPipeline = true)
    {
        _ownsPipeline = ownsPipeline;
        _options = options;
        _metrics = metrics;
        _files = files;
        _load = load;
    }

    public EllaPipeline? Pipeline { get; private set; }
    /// <summary>Why loading the models failed (one line), else null.</summary>
    public string? LoadError { get; private set; }
    public bool IsReady => Pipeline != null;
    /// <summary>True once the models are loaded, false if loading failed.</summary>
    public Task<bool> Ready => _ready.Task;
    public bool IsAccepting { get { lock (_lock) return _accepting; } }
    public ImageJob? Running { get { lock (_lock) return _running; } }
    public int WaitingCount { get { lock (_lock) return _waiting.Count; } }
    public ImageJob? Find(string id) => _jobs.TryGetValue(id, out var job) ? job : null;
    public IReadOnlyList<ImageJob> Jobs => _jobs.Values.OrderBy(j => j.Created).ToList();

    public void Start()
    {
        _thread = new Thread(WorkerLoop) { IsBackground = true, Name = "ella-worker" };
        _thread.Start();
    }

    /// <summary>Queues a job, or throws 503 (loading, shutting down) or 429 (queue full, with Retry-After).</summary>
    public void Submit(ImageJob job)
    {
        lock (_lock)
        {
            if (!_accepting) throw new ApiError(503, "the server is shutting down", null, "shutting_down");
            if (!IsReady) throw new ApiError(503, LoadError ?? "the models are still loading; retry shortly", null, "not_ready") { RetryAfterSeconds = 5 };
            if (_waiting.Count >= _options.MaxQueue)
            {
                _metrics.Jobs.WithLabels("rejected").Inc();
                int wait = (int)Math.Clamp(Math.Ceiling((_waiting.Count + 1) * _meanJobSeconds), 1, 3600);
                throw new ApiError(429, $"the queue is full ({_options.MaxQueue} jobs waiting); retry after {wait} s", null, "queue_full") { RetryAfterSeconds = wait };
            }
            _waiting.AddLast(job);
            _jobs[job.Id] = job;
            job.SetPosition(_waiting.Count);
            _metrics.QueueDepth.Set(_waiting.Count);
        }
        job.Cancellation.Register(() => OnCancelled(job));
        _signal.Release();
    }

    void OnCancelled(ImageJob job)
    {
        lock (_lock)
        {
            if (!_waiting.Remove(job)) return; // running (the loop stops it) or already gone
            UpdatePositions();
        }
        if (job.MarkCancelled()) _metrics.Jobs.WithLabels("cancelled").Inc();
        OnFinished(job);
    }

    void UpdatePositions()
    {
        int i = 1;
        foreach (var j in _waiting) j.SetPosition(i++);
        _metrics.QueueDepth.Set(_waiting.Count);
    }

    void WorkerLoop()
    {
        try
        {
            Pipeline = _load();
            _ready.TrySetResult(true);
        }
        catch (Exception e)
        {
            LoadError = e is EllaException ? e.Message : $"loading the models failed ({e.GetType().Name}): {e.Message}";
            _ready.TrySetResult(false);
            return;
        }
        while (true)
        {
            try { _signal.Wait(_stop.Token); }
            catch (OperationCanceledException) { break; }
            ImageJob job;
            lock (_lock)
            {
                if (_waiting.First is not { } first) continue;
                job = first.Value;
                _waiting.RemoveFirst();
                _running = job;
                UpdatePositions();
            }
            try { Run(job); }
            finally
            {
                lock (_lock) _running = null;
            }
        }
    }

    void Run(ImageJob job)
    {
        if (!job.TryStart())
        {
            if (job.MarkCancelled()) _metrics.Jobs.WithLabels("cancelled").Inc();
            OnFinished(job);
            return;
        }
        _metrics.WaitSeconds.Observe((job.Started!.Value - job.Created).TotalSeconds);
        _metrics.Running.Set(1);
        var clock = Stopwatch.StartNew();
        using var timeout = new CancellationTokenSource(_options.JobTimeout);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(job.Cancellation, timeout.Token);
        string outcome;
        try
        {
            var last = TimeSpan.Zero;
            var progress = new StepReporter(p =>
            {
                _metrics.StepSeconds.Observe((p.Elapsed - last).TotalSeconds);
                last = p.Elapsed;
                job.ReportStep(p);
            });
            using var result = Pipeline!.Generate(job.Request, progress, linked.Token);
            var images = Encode(job, result);
            job.Succeed(new JobResult(images, result.Seed, result.SchedulerName, clock.Elapsed, result.Warnings));
            _metrics.Images.Inc(images.Count);
            outcome = "succeeded";
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !job.Cancellation.IsCancellationRequested)
        {
            job.Fail(new ApiError(504, $"the job ran longer than the server's --job-timeout ({_options.JobTimeout.TotalSeconds:0.#} s) and was cancelled", null, "job_timeout"));
            outcome = "timeout";
        }
        catch (OperationCanceledException)
        {
            job.MarkCancelled();
            outcome = "cancelled";
        }
        catch (EllaException e)
        {
            job.Fail(ApiError.BadRequest(e.Message, null));
            outcome = "failed";
        }
        catch (Exception e)
        {
            job.Fail(new ApiError(500, $"internal error ({e.GetType().Name}): {e.Message}", null, "internal_error"));
            outcome = "failed";
        }
        double seconds = clock.Elapsed.TotalSeconds;
        _metrics.JobSeconds.Observe(seconds);
        _metrics.Jobs.WithLabels(outcome).Inc();
        _metrics.Running.Set(0);
        if (outcome == "succeeded") _meanJobSeconds = 0.8 * _meanJobSeconds + 0.2 * seconds;
        OnFinished(job);
    }

    List<JobImage> Encode(ImageJob job, GenerationResult result)
    {
        var images = new List<JobImage>();
        int n = (int)result.Images.shape[0];
        for (int i = 0; i < n; i++)
        {
            RgbImage rgb;
            using (var chw = result.Images[i]) rgb = RgbImage.FromTensor(chw);
            string parameters = GenerationParameters.Text(Pipeline!, job.Request, result, job.Spec.Prompt, i, _options.DTypeName);
            byte[] png = rgb.EncodePng(new Dictionary<string, string> { ["parameters"] = parameters });
            if (_options.OutputDir is { } dir) File.WriteAllBytes(Path.Combine(dir, $"{job.Id}-{i}.png"), png);
            string? url = job.Spec.ResponseFormat == "url" ? $"{job.BaseUrl}/v1/files/{_files.Add(png)}" : null;
            images.Add(new JobImage(png, parameters, result.Seed, url));
        }
        return images;
    }

    void OnFinished(ImageJob job)
    {
        lock (_lock)
        {
            _finished.Enqueue(job.Id);
            while (_finished.Count > KeepFinished) _jobs.TryRemove(_finished.Dequeue(), out _);
        }
    }

    /// <summary>Stops taking jobs and cancels the waiting ones; the running one may go on.</summary>
    public void BeginShutdown()
    {
        List<ImageJob> waiting;
        lock (_lock)
        {
            _accepting = false;
            waiting = [.. _waiting];
        }
        foreach (var j in waiting) j.Cancel("the server is shutting down");
    }

    /// <summary>Lets the running job finish within <paramref name="grace"/>, then cancels it, and stops the worker.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        BeginShutdown();
        if (Running is { } running)
        {
            if (await Task.WhenAny(running.Completion, Task.Delay(grace)) != running.Completion)
            {
                running.Cancel("the server is shutting down");
                await Task.WhenAny(running.Completion, Task.Delay(TimeSpan.FromSeconds(30)));
            }
        }
        _stop.Cancel();
        _thread?.Join(TimeSpan.FromSeconds(5));
    }

    public void Dispose()
    {
        _stop.Cancel();
        if (_thread is { IsAlive: true } t && !t.Join(TimeSpan.FromSeconds(30))) return; // never dispose a pipeline in use
        if (_ownsPipeline) Pipeline?.Dispose();
        Pipeline = null;
        _signal.Dispose();
    }

    /// <summary>Reports on the worker thread, synchronously (System.Progress would post to the thread pool).</summary>
    sealed class StepReporter(Action<StepProgress> report) : IProgress<StepProgress>
    {
        public void Report(StepProgress value) => report(value);
    }
}
