using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text;
using OpenAI;
using OpenAI.Chat;

namespace Ella.Evaluation.Judges;

public sealed record OpenAiJudgeOptions
{
    /// <summary>Base URL of an OpenAI-compatible chat-completions server (vLLM, llama.cpp server, Ollama, …).</summary>
    public required string Endpoint { get; init; }
    public required string Model { get; init; }
    public string ApiKey { get; init; } = "none";
    /// <summary>Requests in flight at once.</summary>
    public int Parallel { get; init; } = 4;
    /// <summary>Retries per question after a failed request, with exponential backoff.</summary>
    public int Retries { get; init; } = 5;
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromSeconds(0.5);
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(2);
    /// <summary>Every answer is appended here as it arrives; answers already in the file are not asked again.</summary>
    public required string AnswersPath { get; init; }
    public Action<string>? Log { get; init; }
}

/// <summary>
/// A vision chat model behind any OpenAI-compatible server, through the official OpenAI .NET client. Each crop goes
/// as a base64 PNG data URL with the question and a request for a one-word yes/no answer. Raw replies are kept and
/// normalised (trim, lower-case, strip punctuation, first word); a reply that is neither yes nor no is recorded as
/// "unusable" and scores 0 — the judge never invents an answer.
/// </summary>
public sealed class OpenAiJudge : IVqaJudge
{
    public const string Instruction = "Answer the question about the image with one word: yes or no.";
    public const string Unusable = "unusable";

    readonly OpenAiJudgeOptions _options;
    readonly ChatClient _client;
    readonly object _fileLock = new();

    public OpenAiJudge(OpenAiJudgeOptions options)
    {
        if (options.Parallel < 1) throw new EllaException($"--parallel must be at least 1, got {options.Parallel}");
        if (options.Retries < 0) throw new EllaException($"--retries must be at least 0, got {options.Retries}");
        if (!Uri.TryCreate(options.Endpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
            throw new EllaException($"--endpoint {options.Endpoint}: not an http(s) URL");
        _options = options;
        var clientOptions = new OpenAIClientOptions
        {
            Endpoint = endpoint,
            RetryPolicy = new ClientRetryPolicy(0), // retries are ours, with backoff and logging
            NetworkTimeout = options.RequestTimeout,
        };
        _client = new ChatClient(options.Model, new ApiKeyCredential(options.ApiKey), clientOptions);
    }

    public string Name => $"openai ({_options.Model} at {_options.Endpoint})";

    /// <summary>trim, lower-case, strip punctuation, first word → "yes" / "no", else <see cref="Unusable"/>.</summary>
    public static string Normalize(string? raw)
    {
        if (raw == null) return Unusable;
        var cleaned = new StringBuilder();
        foreach (char c in raw.Trim().ToLowerInvariant()) if (!char.IsPunctuation(c) && !char.IsSymbol(c)) cleaned.Append(c);
        var first = cleaned.ToString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
        return first is "yes" or "no" ? first : Unusable;
    }

    public async Task<IReadOnlyDictionary<(string ItemId, int Crop, int PropositionId), VqaAnswer>> AnswerAllAsync(
        IReadOnlyList<VqaQuestion> questions, IProgress<int>? progress, CancellationToken cancellation)
    {
        var known = AnswerLog.Read(_options.AnswersPath);
        var result = new Dictionary<(string, int, int), VqaAnswer>();
        var pending = new List<VqaQuestion>();
        foreach (var q in questions)
        {
            if (known.TryGetValue((q.ItemId, q.Crop, q.PropositionId), out var r) && r.Question == q.Question)
                result[(q.ItemId, q.Crop, q.PropositionId)] = new VqaAnswer(r.Raw ?? r.Answer, r.Answer);
            else pending.Add(q);
        }
        if (result.Count > 0) _options.Log?.Invoke($"resuming: {result.Count} answers already in {_options.AnswersPath}, {pending.Count} to ask");
        int answered = result.Count;
        using var gate = new SemaphoreSlim(_options.Parallel);
        // The first question that fails for good stops the others (its answers so far are already on disk).
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        using var writer = new StreamWriter(new FileStream(_options.AnswersPath, FileMode.Append, FileAccess.Write, FileShare.Read));
        var tasks = pending.Select(async q =>
        {
            await gate.WaitAsync(stop.Token).ConfigureAwait(false);
            try
            {
                VqaAnswer answer;
                try { answer = await AskWithRetriesAsync(q, stop.Token).ConfigureAwait(false); }
                catch (EllaException) { stop.Cancel(); throw; }
                lock (_fileLock)
                {
                    result[(q.ItemId, q.Crop, q.PropositionId)] = answer;
                    writer.WriteLine(AnswerLog.Serialize(new AnswerRecord(q.ItemId, q.Crop, q.PropositionId, q.Question, answer.Answer, answer.Raw)));
                    writer.Flush();
                    progress?.Report(++answered);
                }
            }
            finally { gate.Release(); }
        }).ToList();
        try
        {
            await Task.WhenAll(tasks).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            // Another question failed for good: report that failure, not the cancellations it caused.
            var failure = tasks.Where(t => t.IsFaulted).SelectMany(t => t.Exception!.InnerExceptions).OfType<EllaException>().FirstOrDefault();
            if (failure != null) throw failure;
            throw;
        }
        return result;
    }

    async Task<VqaAnswer> AskWithRetriesAsync(VqaQuestion q, CancellationToken cancellation)
    {
        byte[] png = q.Image().EncodePng();
        var messages = new List<ChatMessage>
        {
            new SystemChatMessage(Instruction),
            new UserChatMessage(ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(png), "image/png"),
                ChatMessageContentPart.CreateTextPart($"{q.Question} Answer yes or no.")),
        };
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 8 };
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                ChatCompletion completion = await _client.CompleteChatAsync(messages, options, cancellation).ConfigureAwait(false);
                string raw = string.Concat(completion.Content.Where(c => c.Kind == ChatMessageContentPartKind.Text).Select(c => c.Text));
                return new VqaAnswer(raw, Normalize(raw));
            }
            catch (Exception e) when (e is ClientResultException or HttpRequestException or TaskCanceledException && !cancellation.IsCancellationRequested)
            {
                if (attempt >= _options.Retries)
                    throw new EllaException($"{_options.Endpoint}: question {q.ItemId}/crop {q.Crop}/proposition {q.PropositionId} failed after {attempt + 1} attempts: {e.Message}. Answers so far are in {_options.AnswersPath}; run again to resume.", e);
                var delay = TimeSpan.FromTicks(_options.InitialBackoff.Ticks * (1L << Math.Min(attempt, 10)));
                _options.Log?.Invoke($"request failed ({e.Message.Split('\n')[0]}); retry {attempt + 1}/{_options.Retries} in {delay.TotalSeconds:F1} s");
                await Task.Delay(delay, cancellation).ConfigureAwait(false);
            }
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
