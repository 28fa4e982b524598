using System.Text.Json.Serialization;
using System.Threading.Channels;
using Ella.Pipelines;
using Ella.Server.Api;

namespace Ella.Server.Jobs;

public enum JobState { Queued, Running, Succeeded, Failed, Cancelled }

/// <summary>One PNG of a finished job, with the same <c>parameters</c> text its tEXt chunk holds.</summary>
public sealed record JobImage(byte[] Png, string Parameters, long Seed, string? Url);

public sealed record JobResult(IReadOnlyList<JobImage> Images, long Seed, string SchedulerName, TimeSpan RunTime, IReadOnlyList<string> Warnings);

/// <summary>A Server-Sent Event: its name (queued, started, step, done, error, cancelled) and JSON data.</summary>
public sealed record JobEvent(string Type, object Data)
{
    public bool IsTerminal => Type is "done" or "error" or "cancelled";
}

/// <summary>
/// A generation request on its way through the queue. Anyone may watch it (<see cref="Subscribe"/>) and cancel it;
/// the worker alone moves it from queued to running to one terminal state, exactly once.
/// </summary>
public sealed class ImageJob
{
    readonly object _lock = new();
    readonly CancellationTokenSource _cts = new();
    readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    readonly List<Channel<JobEvent>> _listeners = [];
    JobEvent? _lastProgress;
    JobEvent? _terminal;

    public ImageJob(ImageSpec spec, GenerationRequest request, string api, string? baseUrl)
    {
        Spec = spec;
        Request = request;
        Api = api;
        BaseUrl = baseUrl;
    }

    public string Id { get; } = "job-" + Guid.NewGuid().ToString("N")[..16];
    public ImageSpec Spec { get; }
    public GenerationRequest Request { get; }
    /// <summary>"openai", "sdapi" or "jobs": which endpoint made it.</summary>
    public string Api { get; }
    /// <summary>Scheme and host the client used, for absolute /v1/files URLs.</summary>
    public string? BaseUrl { get; }
    public DateTimeOffset Created { get; } = DateTimeOffset.UtcNow;
    public DateTimeOffset? Started { get; private set; }
    public DateTimeOffset? Finished { get; private set; }
    public JobState State { get; private set; } = JobState.Queued;
    /// <summary>1 = next to run; 0 once running.</summary>
    public int Position { get; private set; }
    public int Step { get; private set; }
    public int TotalSteps => Request.Steps;
    public JobResult? Result { get; private set; }
    public ApiError? Error { get; private set; }
    public string? CancelReason { get; private set; }
    public CancellationToken Cancellation => _cts.Token;
    /// <summary>Completes (never faults) when the job reaches a terminal state.</summary>
    public Task Completion => _done.Task;
    public bool IsTerminal => State is JobState.Succeeded or JobState.Failed or JobState.Cancelled;

    /// <summary>Asks the job to stop (queued: at once; running: before its next step). False if it had already ended.</summary>
    public bool Cancel(string reason)
    {
        lock (_lock)
        {
            if (IsTerminal) return false;
            CancelReason ??= reason;
        }
        _cts.Cancel();
        return true;
    }

    /// <summary>A stream of this job's events: first its current state, then every change until a terminal event.</summary>
    public ChannelReader<JobEvent> Subscribe()
    {
        var channel = Channel.CreateUnbounded<JobEvent>(new UnboundedChannelOptions { SingleReader = true });
        lock (_lock)
        {
            if (_terminal != null)
            {
                channel.Writer.TryWrite(_terminal);
                channel.Writer.TryComplete();
                return channel.Reader;
            }
            channel.Writer.TryWrite(State == JobState.Queued ? QueuedEvent() : StartedEvent());
            if (_lastProgress != null) channel.Writer.TryWrite(_lastProgress);
            _listeners.Add(channel);
        }
        return channel.Reader;
    }

    /// <summary>Stops a stream; returns how many listeners remain.</summary>
    public int Unsubscribe(ChannelReader<JobEvent> reader)
    {
        lock (_lock)
        {
            _listeners.RemoveAll(c => c.Reader == reader);
            return _listeners.Count;
        }
    }

    JobEvent QueuedEvent() => new("queued", new { id = Id, state = "queued", position = Position });
    JobEvent StartedEvent() => new("started", new { id = Id, state = "running", total_steps = TotalSteps });

    void Publish(JobEvent e)
    {
        foreach (var c in _listeners)
        {
            c.Writer.TryWrite(e);
            if (e.IsTerminal) c.Writer.TryComplete();
        }
        if (e.IsTerminal) _listeners.Clear();
    }

    internal void SetPosition(int position)
    {
        lock (_lock)
        {
            if (State != JobState.Queued || position == Position) return;
            Position = position;
            Publish(QueuedEvent());
        }
    }

    internal bool TryStart()
    {
        lock (_lock)
        {
            if (State != JobState.Queued || _cts.IsCancellationRequested) return false;
            State = JobState.Running;
            Position = 0;
            Started = DateTimeOffset.UtcNow;
            Publish(StartedEvent());
            return true;
        }
    }

    internal void ReportStep(StepProgress p)
    {
        lock (_lock)
        {
            if (State != JobState.Running) return;
            Step = p.Step;
            double perStep = p.Elapsed.TotalSeconds / p.Step;
            _lastProgress = new JobEvent("step", new
            {
                id = Id, state = "running", step = p.Step, total_steps = p.TotalSteps,
                elapsed_seconds = Math.Round(p.Elapsed.TotalSeconds, 3), eta_seconds = Math.Round(perStep * (p.TotalSteps - p.Step), 3),
            });
            Publish(_lastProgress);
        }
    }

    internal bool Succeed(JobResult result) => Finish(JobState.Succeeded, result, null, null);

    internal bool Fail(ApiError error) => Finish(JobState.Failed, null, error, null);

    internal bool MarkCancelled(string? reason = null) => Finish(JobState.Cancelled, null, null, reason);

    bool Finish(JobState state, JobResult? result, ApiError? error, string? reason)
    {
        lock (_lock)
        {
            if (IsTerminal) return false;
            State = state;
            Result = result;
            Error = error;
            if (state == JobState.Cancelled) CancelReason ??= reason ?? "cancelled";
            Finished = DateTimeOffset.UtcNow;
            _terminal = state switch
            {
                JobState.Succeeded => new JobEvent("done", new
                {
                    id = Id, state = "succeeded", created = Created.ToUnixTimeSeconds(), seed = result!.Seed, scheduler = result.SchedulerName,
                    run_seconds = Math.Round(result.RunTime.TotalSeconds, 3), warnings = result.Warnings,
                    data = result.Images.Select(DataItem).ToList(),
                }),
                JobState.Failed => new JobEvent("error", new { id = Id, state = "failed", status = error!.Status, error = error.Body().Error }),
                _ => new JobEvent("cancelled", new { id = Id, state = "cancelled", reason = CancelReason }),
            };
            Publish(_terminal);
        }
        _done.TrySetResult();
        return true;
    }

    /// <summary>One entry of OpenAI's <c>data</c> array (plus our parameters and seed).</summary>
    public ImageData DataItem(JobImage image) => Spec.ResponseFormat == "url" && image.Url != null
        ? new ImageData(null, image.Url, image.Parameters, image.Seed)
        : new ImageData(Convert.ToBase64String(image.Png), null, image.Parameters, image.Seed);

    public sealed record ImageData(
        [property: JsonPropertyName("b64_json"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? B64Json,
        [property: JsonPropertyName("url"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Url,
        [property: JsonPropertyName("parameters")] string Parameters,
        [property: JsonPropertyName("seed")] long Seed);
}
