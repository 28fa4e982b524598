using Ella.World.Language;

namespace Ella.World.Questions;

/// <summary>One proposition of an item's question graph (DPG-Bench's columns, minus item and prompt).</summary>
public sealed record WorldQuestion(int PropositionId, IReadOnlyList<int> Dependencies, WorldTuple Tuple)
{
    public string Question => Tuple.Question;
    public string DependencyText => Dependencies.Count == 0 ? "0" : string.Join(",", Dependencies);
}

/// <summary>
/// The question graph of a scene's stated facts, ordered as DPG-Bench's: the background first (no parent, so the
/// official script's skipped first CSV row costs one question and never a whole item), then per group its entity,
/// the attributes its descriptor does not already name, and its count when it has several members (children of
/// the entity); then relations (children of both entities); then shape and total counts (no parent).
/// </summary>
public static class QuestionGraph
{
    public static List<WorldQuestion> Build(SceneFacts facts)
    {
        var questions = new List<WorldQuestion>();
        int Add(WorldTuple t, params int[] parents)
        {
            questions.Add(new WorldQuestion(questions.Count + 1, parents, t));
            return questions.Count;
        }
        Add(new BackgroundTuple(facts.Scene.Background));
        var entity = new Dictionary<ObjectGroup, int>(ReferenceEqualityComparer.Instance);
        foreach (var g in facts.Groups)
        {
            int e = entity[g] = Add(new EntityTuple(g.Reference));
            if (g.Reference.Color == null) Add(new ColorTuple(g.Reference, g.Kind.Color), e);
            if (g.Reference.Size == null) Add(new SizeTuple(g.Reference, g.Kind.Size), e);
            if (g.Count > 1) Add(new CountTuple(g.Reference, g.Count), e);
        }
        foreach (var r in facts.Relations)
            Add(new RelationTuple(r.Subject.Reference, r.Reference.Reference, r.Relation), entity[r.Subject], entity[r.Reference]);
        foreach (var c in facts.Counts)
            Add(new CountTuple(new Descriptor(null, null, c.Shape), c.Count));
        return questions;
    }
}
