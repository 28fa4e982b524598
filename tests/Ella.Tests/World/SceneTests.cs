using Ella.World.Questions;
using Ella.World.Rendering;
using Ella.World.Scenes;
using Ella.World.Splits;

namespace Ella.Tests.World;

public sealed class SceneTests
{
    static IEnumerable<WorldItem> Train(int n) => Enumerable.Range(0, n).Select(i => WorldSplits.Item(WorldSplit.Train, i));

    [Fact]
    public void Scenes_keep_the_world_rules()
    {
        var objectCounts = new int[5];
        foreach (var item in Train(3000))
        {
            var s = item.Scene;
            objectCounts[s.Objects.Count]++;
            foreach (var o in s.Objects)
            {
                Assert.NotEqual(Vocabulary.SameAs(s.Background), o.Color);
                Assert.InRange(o.X, SceneSampler.Margin, Vocabulary.CanvasSize - SceneSampler.Margin - o.Side);
                Assert.InRange(o.Y, SceneSampler.Margin, Vocabulary.CanvasSize - SceneSampler.Margin - o.Side);
                if (o.Size == ObjectSize.Small) Assert.InRange(o.Side, Vocabulary.SmallMin, Vocabulary.SmallMax);
                else Assert.InRange(o.Side, Vocabulary.LargeMin, Vocabulary.LargeMax);
                foreach (var p in s.Objects.Where(p => !ReferenceEquals(p, o))) Assert.True(o.Gap(p) >= SceneSampler.MinGap, $"{item.Id}: objects too close");
            }
        }
        Assert.Equal(0, objectCounts[0]);
        for (int k = 1; k <= 4; k++) Assert.InRange(objectCounts[k], 600, 900);
    }

    [Fact]
    public void Every_stated_fact_holds_in_its_scene_and_the_graph_is_well_formed()
    {
        int groupsWithCount = 0;
        foreach (var item in Train(2000).Concat(Enumerable.Range(0, WorldSplits.EvalCount).Select(i => WorldSplits.Item(WorldSplit.Eval, i))))
        {
            var truth = PerceivedScene.Of(item.Scene);
            var ids = new HashSet<int>();
            Assert.IsType<BackgroundTuple>(item.Questions[0].Tuple);
            foreach (var q in item.Questions)
            {
                Assert.True(q.Tuple.Holds(truth), $"{item.Id}: {q.Tuple} does not hold");
                Assert.Equal(q.Tuple, WorldTuple.TryParse(q.Tuple.ToString()));
                Assert.All(q.Dependencies, d => Assert.Contains(d, ids)); // parents come first
                Assert.True(ids.Add(q.PropositionId));
                if (q.Tuple is CountTuple { Object.Shape: not null }) groupsWithCount++;
            }
            // Every object is named by exactly one entity question, and that descriptor picks out exactly its kind.
            foreach (var o in item.Scene.Objects)
            {
                var entity = Assert.Single(item.Questions.Select(q => q.Tuple).OfType<EntityTuple>(), e => e.Object.Matches(o.Kind));
                Assert.All(item.Scene.Objects.Where(p => entity.Object.Matches(p.Kind)), p => Assert.Equal(o.Kind, p.Kind));
            }
        }
        Assert.True(groupsWithCount > 100, $"only {groupsWithCount} count questions");
    }

    [Fact]
    public void Renders_are_antialiased_shapes_of_the_right_colours()
    {
        var scene = new Scene(Background.Gray, [new SceneObject(Shape.Square, ObjectColor.Red, ObjectSize.Large, 10, 10, 20), new SceneObject(Shape.Circle, ObjectColor.Blue, ObjectSize.Large, 36, 36, 20)]);
        var img = SceneRenderer.Render(scene);
        byte[] Px(int x, int y) => img.Pixels.AsSpan((y * 64 + x) * 3, 3).ToArray();
        Assert.Equal(new byte[] { 128, 128, 128 }, Px(0, 0));
        Assert.Equal(new byte[] { 230, 30, 40 }, Px(10, 10)); // square corners are inside
        Assert.Equal(new byte[] { 230, 30, 40 }, Px(29, 29));
        Assert.Equal(new byte[] { 128, 128, 128 }, Px(30, 30));
        Assert.Equal(new byte[] { 128, 128, 128 }, Px(36, 36)); // the circle's box corner is outside it
        Assert.Equal(new byte[] { 35, 70, 225 }, Px(46, 46));
        var rim = Px(53, 38); // the circle's rim at 45°: partly covered
        Assert.InRange((int)rim[2], 129, 224);
        // Upscaled renders draw the same scene.
        Assert.True(SceneParserTestsHelpers.Same(PerceivedScene.Of(scene), Ella.World.Perception.SceneParser.Parse(SceneRenderer.Render(scene, 256))));
    }
}

static class SceneParserTestsHelpers
{
    /// <summary>Same background and objects, centres within <paramref name="tolerance"/> canvas pixels.</summary>
    public static bool Same(PerceivedScene a, PerceivedScene b, double tolerance = 1)
    {
        if (a.Background != b.Background || a.Objects.Count != b.Objects.Count) return false;
        var left = b.Objects.ToList();
        foreach (var o in a.Objects)
        {
            var match = left.FirstOrDefault(p => p.Shape == o.Shape && p.Color == o.Color && p.Size == o.Size
                && Math.Abs(p.CenterX - o.CenterX) <= tolerance && Math.Abs(p.CenterY - o.CenterY) <= tolerance);
            if (match == null) return false;
            left.Remove(match);
        }
        return true;
    }
}
