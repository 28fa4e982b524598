using Prometheus;

namespace Ella.Server.Metrics;

/// <summary>The server's Prometheus metrics (prometheus-net), in a registry of its own so several servers can share a process.</summary>
public sealed class ServerMetrics
{
    public CollectorRegistry Registry { get; } = Prometheus.Metrics.NewCustomRegistry();
    public Gauge QueueDepth { get; }
    public Gauge Running { get; }
    public Counter Jobs { get; }
    public Histogram StepSeconds { get; }
    public Histogram JobSeconds { get; }
    public Histogram WaitSeconds { get; }
    public Counter Images { get; }

    public static readonly string[] Outcomes = ["succeeded", "failed", "cancelled", "timeout", "rejected"];

    public ServerMetrics()
    {
        var f = Prometheus.Metrics.WithCustomRegistry(Registry);
        QueueDepth = f.CreateGauge("ella_queue_depth", "Jobs waiting behind the running one.");
        Running = f.CreateGauge("ella_jobs_running", "Jobs running now (0 or 1).");
        Jobs = f.CreateCounter("ella_jobs_total", "Jobs by outcome: succeeded, failed, cancelled, timeout, rejected (queue full).",
            new CounterConfiguration { LabelNames = ["outcome"] });
        foreach (var o in Outcomes) Jobs.WithLabels(o);
        StepSeconds = f.CreateHistogram("ella_step_duration_seconds", "Time of one denoising step.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.005, 2, 14) });
        JobSeconds = f.CreateHistogram("ella_job_duration_seconds", "Run time of a job (encode, denoise, decode, PNG).",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.05, 2, 14) });
        WaitSeconds = f.CreateHistogram("ella_job_wait_seconds", "Time a job waited in the queue.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.01, 2, 16) });
        Images = f.CreateCounter("ella_images_generated_total", "Images generated.");
    }
}
