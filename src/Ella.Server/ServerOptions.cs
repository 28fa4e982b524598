using Ella.Pipelines;

namespace Ella.Server;

/// <summary>What <c>ella serve</c> was told: where to listen, who may call, and the limits that keep one pipeline healthy.</summary>
public sealed record ServerOptions
{
    /// <summary>Loopback unless the user explicitly asks for another address (e.g. 0.0.0.0).</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests).</summary>
    public int Port { get; init; } = 7860;
    /// <summary>When set, every API call needs <c>Authorization: Bearer KEY</c> (<c>/health</c>, the page and file URLs stay open).</summary>
    public string? ApiKey { get; init; }
    /// <summary>Jobs that may wait behind the running one; beyond it requests get 429 with Retry-After.</summary>
    public int MaxQueue { get; init; } = 16;
    /// <summary>A running job older than this is cancelled.</summary>
    public TimeSpan JobTimeout { get; init; } = TimeSpan.FromMinutes(10);
    /// <summary>Largest width × height of one image.</summary>
    public long MaxPixels { get; init; } = 1024 * 1024;
    /// <summary>On SIGTERM the running job may finish within this time; then it is cancelled.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>When set, every generated PNG is also kept here as &lt;job id&gt;-&lt;i&gt;.png.</summary>
    public string? OutputDir { get; init; }
    /// <summary>Longest accepted prompt or negative prompt, in characters.</summary>
    public int MaxPromptChars { get; init; } = 4000;
    /// <summary>Largest request body; larger bodies get 413. Room for an init image and a mask (base64 or uploads).</summary>
    public long MaxBodyBytes { get; init; } = 32 << 20;
    /// <summary>How long <c>response_format: url</c> images stay downloadable from /v1/files/….</summary>
    public TimeSpan FileTtl { get; init; } = TimeSpan.FromHours(1);
    /// <summary>Most images kept for /v1/files at once (oldest dropped first).</summary>
    public int MaxFiles { get; init; } = 256;
    /// <summary>The model id /v1/models and /sdapi/v1/sd-models report.</summary>
    public string ModelId { get; init; } = "ella";
    /// <summary>"fp32", "bf16": written into the PNG parameters as <c>ella generate</c> does.</summary>
    public string DTypeName { get; init; } = "fp32";
    /// <summary>Defaults for fields a request leaves out (from the model flags: --steps, --guidance, --scheduler, --mode, --width, --height, …).</summary>
    public GenerationRequest Defaults { get; init; } = new() { Prompts = [] };
}
