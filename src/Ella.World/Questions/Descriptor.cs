using Ella.World.Scenes;

namespace Ella.World.Questions;

/// <summary>
/// How a tuple names objects: optional size, optional colour, and a shape (or "shape" for any), e.g. "circle",
/// "red circle", "large circle", "small red circle", "shape". It denotes every object that has all the named attributes.
/// </summary>
public readonly record struct Descriptor(ObjectSize? Size, ObjectColor? Color, Shape? Shape)
{
    public const string AnyShapeWord = "shape";

    public bool Matches(Shape shape, ObjectColor color, ObjectSize size) =>
        (Shape == null || Shape == shape) && (Color == null || Color == color) && (Size == null || Size == size);

    public bool Matches(ObjectKind k) => Matches(k.Shape, k.Color, k.Size);

    public override string ToString()
    {
        var words = new List<string>(3);
        if (Size is { } s) words.Add(Vocabulary.Word(s));
        if (Color is { } c) words.Add(Vocabulary.Word(c));
        words.Add(Shape is { } sh ? Vocabulary.Word(sh) : AnyShapeWord);
        return string.Join(' ', words);
    }

    public string Plural => ToString() + "s";

    /// <summary>Parses "[size] [color] shape"; null when the text is not a descriptor.</summary>
    public static Descriptor? TryParse(string text)
    {
        var words = text.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (words.Length is < 1 or > 3) return null;
        Shape? shape = null;
        string last = words[^1].ToLowerInvariant();
        if (Vocabulary.TryParse<Shape>(last, out var sh)) shape = sh;
        else if (last != AnyShapeWord) return null;
        ObjectSize? size = null;
        ObjectColor? color = null;
        foreach (var w in words[..^1])
        {
            if (size == null && color == null && Vocabulary.TryParse<ObjectSize>(w, out var s)) size = s;
            else if (color == null && Vocabulary.TryParse<ObjectColor>(w, out var c)) color = c;
            else return null;
        }
        return new Descriptor(size, color, shape);
    }
}
