using Ella.Evaluation.DpgBench;
using Ella.World.Perception;
using Ella.World.Questions;

namespace Ella.Evaluation.Judges;

/// <summary>
/// The shapes world's programmatic VQA model: each crop is parsed once into objects (<see cref="SceneParser"/>), and
/// each question is answered from its row's <c>tuple</c> (<see cref="WorldTuple"/>), not from its wording. Only CSVs
/// written by <c>ella world bench</c> (or in their tuple syntax) can be judged. "no" answers carry what was seen, so
/// <c>dpg_detail.txt</c> explains them.
/// </summary>
public sealed class ShapesJudge : IVqaJudge
{
    readonly Dictionary<(string, int), WorldTuple> _tuples = new();

    public ShapesJudge(IEnumerable<DpgRow> rows, string csvName = "the benchmark CSV")
    {
        foreach (var r in rows)
            _tuples[(r.ItemId, r.PropositionId)] = WorldTuple.TryParse(r.Tuple)
                ?? throw new EllaException($"{csvName}: row {r.RowNumber}: tuple '{r.Tuple}' is not a shapes-world tuple (the shapes judge answers CSVs written by 'ella world bench')");
    }

    public string Name => "shapes (scene parser)";

    public Task<IReadOnlyDictionary<(string ItemId, int Crop, int PropositionId), VqaAnswer>> AnswerAllAsync(
        IReadOnlyList<VqaQuestion> questions, IProgress<int>? progress, CancellationToken cancellation)
    {
        var result = new Dictionary<(string, int, int), VqaAnswer>();
        int answered = 0;
        foreach (var crop in questions.GroupBy(q => (q.ItemId, q.Crop)))
        {
            cancellation.ThrowIfCancellationRequested();
            var scene = SceneParser.Parse(crop.First().Image());
            foreach (var q in crop)
            {
                if (!_tuples.TryGetValue((q.ItemId, q.PropositionId), out var tuple))
                    throw new EllaException($"shapes judge: no tuple for item '{q.ItemId}' proposition {q.PropositionId}");
                result[(q.ItemId, q.Crop, q.PropositionId)] = Answer(tuple, scene);
                progress?.Report(++answered);
            }
        }
        return Task.FromResult<IReadOnlyDictionary<(string, int, int), VqaAnswer>>(result);
    }

    /// <summary>"yes" or "no"; a no carries the parsed scene in its raw text.</summary>
    public static VqaAnswer Answer(WorldTuple tuple, PerceivedScene scene) =>
        tuple.Holds(scene) ? new VqaAnswer("yes", "yes") : new VqaAnswer($"no (saw: {scene})", "no");

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
