namespace Ella.World.Scenes;

public enum Shape { Circle, Square, Triangle }

public enum ObjectColor { Red, Green, Blue, Yellow, Purple, Orange, White, Black }

public enum ObjectSize { Small, Large }

public enum Background { White, Black, Gray, Beige }

/// <summary>An sRGB colour of the palette.</summary>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    public double DistanceSquared(double r, double g, double b) => (R - r) * (R - r) + (G - g) * (G - g) + (B - b) * (B - b);
}

/// <summary>
/// The world's closed vocabulary: canonical words (the ones tuples use) and the palette. Object sizes are the side of
/// the bounding box in pixels on the 64-pixel canvas: small 10–13, large 19–24; <see cref="SizeThreshold"/> separates them.
/// </summary>
public static class Vocabulary
{
    public const int CanvasSize = 64;
    public const int SmallMin = 10, SmallMax = 13, LargeMin = 19, LargeMax = 24;
    /// <summary>Bounding-box side (on the 64-pixel canvas) from which an object is large.</summary>
    public const double SizeThreshold = 16;

    public static readonly Shape[] Shapes = Enum.GetValues<Shape>();
    public static readonly ObjectColor[] Colors = Enum.GetValues<ObjectColor>();
    public static readonly ObjectSize[] Sizes = Enum.GetValues<ObjectSize>();
    public static readonly Background[] Backgrounds = Enum.GetValues<Background>();

    public static Rgb Palette(ObjectColor c) => c switch
    {
        ObjectColor.Red => new(230, 30, 40),
        ObjectColor.Green => new(30, 165, 60),
        ObjectColor.Blue => new(35, 70, 225),
        ObjectColor.Yellow => new(250, 215, 20),
        ObjectColor.Purple => new(140, 45, 175),
        ObjectColor.Orange => new(250, 135, 20),
        ObjectColor.White => new(255, 255, 255),
        ObjectColor.Black => new(0, 0, 0),
        _ => throw new ArgumentOutOfRangeException(nameof(c)),
    };

    public static Rgb Palette(Background b) => b switch
    {
        Background.White => new(255, 255, 255),
        Background.Black => new(0, 0, 0),
        Background.Gray => new(128, 128, 128),
        Background.Beige => new(222, 205, 160),
        _ => throw new ArgumentOutOfRangeException(nameof(b)),
    };

    /// <summary>The object colour that is the background's own (never drawn on it), if any.</summary>
    public static ObjectColor? SameAs(Background b) => b switch
    {
        Background.White => ObjectColor.White,
        Background.Black => ObjectColor.Black,
        _ => null,
    };

    public static string Word(Shape s) => s.ToString().ToLowerInvariant();
    public static string Word(ObjectColor c) => c.ToString().ToLowerInvariant();
    public static string Word(ObjectSize s) => s.ToString().ToLowerInvariant();
    public static string Word(Background b) => b.ToString().ToLowerInvariant();

    public static string Plural(Shape s) => Word(s) + "s";

    public static readonly string[] NumberWords = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];

    public static string Number(int n) => n >= 0 && n < NumberWords.Length ? NumberWords[n] : n.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static bool TryParse<T>(string word, out T value) where T : struct, Enum =>
        Enum.TryParse(word, ignoreCase: true, out value) && Enum.IsDefined(value) && !int.TryParse(word, out _);
}
