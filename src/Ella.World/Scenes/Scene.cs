namespace Ella.World.Scenes;

/// <summary>One object: its kind and its axis-aligned bounding box (left, top, side) in canvas pixels.</summary>
public sealed record SceneObject(Shape Shape, ObjectColor Color, ObjectSize Size, int X, int Y, int Side)
{
    public double CenterX => X + Side / 2.0;
    public double CenterY => Y + Side / 2.0;
    public ObjectKind Kind => new(Shape, Color, Size);

    /// <summary>Pixels between two boxes along the axis where they are apart (negative when they overlap).</summary>
    public int Gap(SceneObject o) => Math.Max(Math.Max(o.X - (X + Side), X - (o.X + o.Side)), Math.Max(o.Y - (Y + Side), Y - (o.Y + o.Side)));
}

/// <summary>What distinguishes objects in language: shape, colour and size (two objects of one kind are "two red circles").</summary>
public readonly record struct ObjectKind(Shape Shape, ObjectColor Color, ObjectSize Size);

/// <summary>A scene: a plain background and 1–4 non-overlapping objects on a 64×64 canvas.</summary>
public sealed record Scene(Background Background, IReadOnlyList<SceneObject> Objects);
