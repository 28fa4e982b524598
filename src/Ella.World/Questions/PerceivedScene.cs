using Ella.World.Scenes;

namespace Ella.World.Questions;

/// <summary>An object as seen: its attributes and the centre of its bounding box in canvas pixels (0..64).</summary>
public sealed record PerceivedObject(Shape Shape, ObjectColor Color, ObjectSize Size, double CenterX, double CenterY)
{
    public override string ToString() =>
        $"{Vocabulary.Word(Size)} {Vocabulary.Word(Color)} {Vocabulary.Word(Shape)} at ({CenterX:F0}, {CenterY:F0})";
}

/// <summary>What tuples are evaluated against: the ground truth of a drawn scene, or what the parser saw in an image.</summary>
public sealed record PerceivedScene(Background Background, IReadOnlyList<PerceivedObject> Objects)
{
    public IEnumerable<PerceivedObject> Matching(Descriptor d) => Objects.Where(o => d.Matches(o.Shape, o.Color, o.Size));

    /// <summary>The ground truth of a scene.</summary>
    public static PerceivedScene Of(Scene scene) =>
        new(scene.Background, scene.Objects.Select(o => new PerceivedObject(o.Shape, o.Color, o.Size, o.CenterX, o.CenterY)).ToList());

    public override string ToString() =>
        $"{Vocabulary.Word(Background)} background; " + (Objects.Count == 0 ? "no objects" : string.Join("; ", Objects));
}
