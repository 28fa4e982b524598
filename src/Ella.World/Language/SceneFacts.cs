using Ella.World.Questions;
using Ella.World.Scenes;

namespace Ella.World.Language;

/// <summary>Objects of one kind (shape, colour, size), and the shortest descriptor that picks exactly them out.</summary>
public sealed record ObjectGroup(ObjectKind Kind, IReadOnlyList<SceneObject> Members, Descriptor Reference)
{
    public int Count => Members.Count;
}

/// <summary>A spatial relation between two single objects, as the caption states it (subject first).</summary>
public sealed record StatedRelation(ObjectGroup Subject, ObjectGroup Reference, Relation Relation);

/// <summary>A count of all objects of one shape (or of all objects when <see cref="Shape"/> is null).</summary>
public sealed record StatedCount(Shape? Shape, int Count);

/// <summary>
/// The facts a dense caption states and its question graph asks about: every group with all its attributes, the
/// background, a chain of spatial relations between single objects (plus sometimes one more), and sometimes counts
/// of a shape spread over several groups or of all objects. Relations are only stated along the axis where the two
/// boxes are apart, so they are never borderline.
/// </summary>
public sealed record SceneFacts(Scene Scene, IReadOnlyList<ObjectGroup> Groups, IReadOnlyList<StatedRelation> Relations, IReadOnlyList<StatedCount> Counts)
{
    public static SceneFacts Choose(Scene scene, WorldRandom rng)
    {
        var kinds = scene.Objects.Select(o => o.Kind).Distinct().ToList();
        var groups = new List<ObjectGroup>();
        foreach (var kind in kinds)
        {
            var members = scene.Objects.Where(o => o.Kind == kind).ToList();
            var candidates = new Descriptor[]
            {
                new(null, null, kind.Shape), new(null, kind.Color, kind.Shape), new(kind.Size, null, kind.Shape), new(kind.Size, kind.Color, kind.Shape),
            };
            int Words(Descriptor d) => (d.Size != null ? 1 : 0) + (d.Color != null ? 1 : 0);
            var valid = candidates.Where(d => scene.Objects.Where(o => d.Matches(o.Kind)).Count() == members.Count).ToList();
            int shortest = valid.Min(Words);
            groups.Add(new ObjectGroup(kind, members, rng.Pick(valid.Where(d => Words(d) == shortest).ToList())));
        }
        rng.Shuffle(groups);

        var singles = groups.Where(g => g.Count == 1).ToList();
        var pairs = new List<(ObjectGroup, ObjectGroup)>();
        for (int i = 1; i < singles.Count; i++) pairs.Add((singles[i - 1], singles[i]));
        if (singles.Count >= 3 && rng.Chance(0.5)) pairs.Add((singles[0], singles[rng.Between(2, singles.Count - 1)]));
        var relations = new List<StatedRelation>();
        foreach (var (p, q) in pairs)
        {
            var (a, b) = rng.Chance(0.5) ? (p, q) : (q, p);
            relations.Add(new StatedRelation(a, b, Between(a.Members[0], b.Members[0])));
        }

        var counts = new List<StatedCount>();
        foreach (var shape in Vocabulary.Shapes)
        {
            int n = scene.Objects.Count(o => o.Shape == shape);
            if (n >= 2 && groups.Count(g => g.Kind.Shape == shape) >= 2 && rng.Chance(0.6)) counts.Add(new StatedCount(shape, n));
        }
        if (scene.Objects.Count >= 2 && rng.Chance(0.3)) counts.Add(new StatedCount(null, scene.Objects.Count));
        return new SceneFacts(scene, groups, relations, counts);
    }

    /// <summary>The relation of a to b along the axis on which their centres are further apart.</summary>
    public static Relation Between(SceneObject a, SceneObject b)
    {
        double dx = a.CenterX - b.CenterX, dy = a.CenterY - b.CenterY;
        return Math.Abs(dx) >= Math.Abs(dy)
            ? dx < 0 ? Relation.LeftOf : Relation.RightOf
            : dy < 0 ? Relation.Above : Relation.Below;
    }
}
