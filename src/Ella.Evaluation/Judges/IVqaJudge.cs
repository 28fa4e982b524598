using Ella.Imaging;

namespace Ella.Evaluation.Judges;

/// <summary>One yes/no question about one crop of one benchmark image.</summary>
public sealed record VqaQuestion(string ItemId, int Crop, int PropositionId, string Question, Func<RgbImage> Image);

/// <summary>A judge's answer: the raw reply and its normalised form ("yes", "no", or the unusable raw text).</summary>
public sealed record VqaAnswer(string Raw, string Answer)
{
    public bool IsYes => Answer == "yes";
}

/// <summary>
/// A visual question-answering model that answers DPG-Bench's yes/no questions. Scoring never knows which judge it has:
/// replayed answers, an OpenAI-compatible server, or (later) a local model.
/// </summary>
public interface IVqaJudge : IAsyncDisposable
{
    string Name { get; }
    /// <summary>Answers every question; implementations may answer in parallel and in any order.</summary>
    Task<IReadOnlyDictionary<(string ItemId, int Crop, int PropositionId), VqaAnswer>> AnswerAllAsync(
        IReadOnlyList<VqaQuestion> questions, IProgress<int>? progress, CancellationToken cancellation);
}
