namespace Ella.Evaluation.Judges;

/// <summary>Answers from a JSONL file recorded earlier (by the openai judge, or the fixtures): exact strings, no model.</summary>
public sealed class ReplayJudge : IVqaJudge
{
    readonly Dictionary<(string, int, int), AnswerRecord> _answers;
    readonly string _path;

    public ReplayJudge(string answersPath)
    {
        if (!File.Exists(answersPath)) throw new EllaException($"{answersPath}: answers file not found");
        _path = answersPath;
        _answers = AnswerLog.Read(answersPath);
    }

    public string Name => $"replay ({Path.GetFileName(_path)})";

    public Task<IReadOnlyDictionary<(string ItemId, int Crop, int PropositionId), VqaAnswer>> AnswerAllAsync(
        IReadOnlyList<VqaQuestion> questions, IProgress<int>? progress, CancellationToken cancellation)
    {
        // Missing answers are left out: the scorer names them if it needs them.
        var result = new Dictionary<(string, int, int), VqaAnswer>();
        foreach (var q in questions)
            if (_answers.TryGetValue((q.ItemId, q.Crop, q.PropositionId), out var r))
                result[(q.ItemId, q.Crop, q.PropositionId)] = new VqaAnswer(r.Raw ?? r.Answer, r.Answer);
        progress?.Report(questions.Count);
        return Task.FromResult<IReadOnlyDictionary<(string, int, int), VqaAnswer>>(result);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
