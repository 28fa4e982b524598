using System.Globalization;
using System.Text.RegularExpressions;
using Ella.World.Scenes;

namespace Ella.World.Questions;

public enum Relation { LeftOf, RightOf, Above, Below }

/// <summary>
/// One proposition about a scene, in DPG-Bench's tuple syntax <c>L1 - L2 (arguments)</c>:
/// <c>entity - whole (circle)</c>, <c>attribute - color (circle, red)</c>, <c>attribute - size (circle, large)</c>,
/// <c>relation - spatial (circle, square, left of)</c>, <c>other - count (red circle, ==2)</c>,
/// <c>global - background (gray)</c>. Arguments use the canonical words of <see cref="Vocabulary"/>.
/// </summary>
public abstract record WorldTuple
{
    public abstract string CategoryBroad { get; }
    public abstract string CategoryDetailed { get; }
    protected abstract IEnumerable<string> Arguments { get; }
    /// <summary>The question in plain English (canonical words).</summary>
    public abstract string Question { get; }

    public sealed override string ToString() => $"{CategoryBroad} - {CategoryDetailed} ({string.Join(", ", Arguments)})";

    public static string Word(Relation r) => r switch
    {
        Relation.LeftOf => "left of",
        Relation.RightOf => "right of",
        Relation.Above => "above",
        Relation.Below => "below",
        _ => throw new ArgumentOutOfRangeException(nameof(r)),
    };

    public static Relation Inverse(Relation r) => r switch
    {
        Relation.LeftOf => Relation.RightOf,
        Relation.RightOf => Relation.LeftOf,
        Relation.Above => Relation.Below,
        _ => Relation.Above,
    };

    static readonly Regex Syntax = new(@"^\s*([a-z]+)\s*-\s*([a-z]+)\s*\((.*)\)\s*$", RegexOptions.CultureInvariant);

    /// <summary>Parses a tuple; null when it is not a shapes-world tuple.</summary>
    public static WorldTuple? TryParse(string text)
    {
        var m = Syntax.Match(text);
        if (!m.Success) return null;
        var args = m.Groups[3].Value.Split(',').Select(a => a.Trim()).ToArray();
        string kind = m.Groups[1].Value + " - " + m.Groups[2].Value;
        switch (kind)
        {
            case "entity - whole" when args.Length == 1:
                return Descriptor.TryParse(args[0]) is { } d ? new EntityTuple(d) : null;
            case "attribute - color" when args.Length == 2:
                return Descriptor.TryParse(args[0]) is { } dc && Vocabulary.TryParse<ObjectColor>(args[1], out var c) ? new ColorTuple(dc, c) : null;
            case "attribute - size" when args.Length == 2:
                return Descriptor.TryParse(args[0]) is { } ds && Vocabulary.TryParse<ObjectSize>(args[1], out var s) ? new SizeTuple(ds, s) : null;
            case "relation - spatial" when args.Length == 3:
                var rel = Enum.GetValues<Relation>().Where(r => Word(r) == args[2]).Cast<Relation?>().FirstOrDefault();
                return Descriptor.TryParse(args[0]) is { } a && Descriptor.TryParse(args[1]) is { } b && rel != null ? new RelationTuple(a, b, rel.Value) : null;
            case "other - count" when args.Length == 2 && args[1].StartsWith("==", StringComparison.Ordinal):
                return Descriptor.TryParse(args[0]) is { } dn && int.TryParse(args[1][2..], NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? new CountTuple(dn, n) : null;
            case "global - background" when args.Length == 1:
                return Vocabulary.TryParse<Background>(args[0], out var bg) ? new BackgroundTuple(bg) : null;
            default:
                return null;
        }
    }

    /// <summary>Whether the proposition holds in a scene as perceived (or as drawn).</summary>
    public abstract bool Holds(PerceivedScene scene);

    protected static string Article(string word) => "aeiou".Contains(word[0]) ? "an" : "a";
}

/// <summary>Some object fits the descriptor.</summary>
public sealed record EntityTuple(Descriptor Object) : WorldTuple
{
    public override string CategoryBroad => "entity";
    public override string CategoryDetailed => "whole";
    protected override IEnumerable<string> Arguments => [Object.ToString()];
    public override string Question => $"Is there {Article(Object.ToString())} {Object}?";
    public override bool Holds(PerceivedScene scene) => scene.Matching(Object).Any();
}

/// <summary>Some object that fits the descriptor has this colour.</summary>
public sealed record ColorTuple(Descriptor Object, ObjectColor Color) : WorldTuple
{
    public override string CategoryBroad => "attribute";
    public override string CategoryDetailed => "color";
    protected override IEnumerable<string> Arguments => [Object.ToString(), Vocabulary.Word(Color)];
    public override string Question => $"Is the {Object} {Vocabulary.Word(Color)}?";
    public override bool Holds(PerceivedScene scene) => scene.Matching(Object).Any(o => o.Color == Color);
}

/// <summary>Some object that fits the descriptor has this size.</summary>
public sealed record SizeTuple(Descriptor Object, ObjectSize Size) : WorldTuple
{
    public override string CategoryBroad => "attribute";
    public override string CategoryDetailed => "size";
    protected override IEnumerable<string> Arguments => [Object.ToString(), Vocabulary.Word(Size)];
    public override string Question => $"Is the {Object} {Vocabulary.Word(Size)}?";
    public override bool Holds(PerceivedScene scene) => scene.Matching(Object).Any(o => o.Size == Size);
}

/// <summary>Some object fitting <see cref="Subject"/> is left of / right of / above / below some other object fitting <see cref="Reference"/>.</summary>
public sealed record RelationTuple(Descriptor Subject, Descriptor Reference, Relation Relation) : WorldTuple
{
    /// <summary>Centres must differ by more than this (canvas pixels) along the relation's axis.</summary>
    public const double Margin = 2;

    public override string CategoryBroad => "relation";
    public override string CategoryDetailed => "spatial";
    protected override IEnumerable<string> Arguments => [Subject.ToString(), Reference.ToString(), Word(Relation)];
    public override string Question => Relation switch
    {
        Relation.LeftOf => $"Is the {Subject} to the left of the {Reference}?",
        Relation.RightOf => $"Is the {Subject} to the right of the {Reference}?",
        Relation.Above => $"Is the {Subject} above the {Reference}?",
        _ => $"Is the {Subject} below the {Reference}?",
    };

    public static bool Between(double ax, double ay, double bx, double by, Relation r) => r switch
    {
        Relation.LeftOf => ax < bx - Margin,
        Relation.RightOf => ax > bx + Margin,
        Relation.Above => ay < by - Margin,
        _ => ay > by + Margin,
    };

    public override bool Holds(PerceivedScene scene) =>
        scene.Matching(Subject).Any(a => scene.Matching(Reference).Any(b => !ReferenceEquals(a, b) && Between(a.CenterX, a.CenterY, b.CenterX, b.CenterY, Relation)));
}

/// <summary>Exactly <see cref="Count"/> objects fit the descriptor.</summary>
public sealed record CountTuple(Descriptor Object, int Count) : WorldTuple
{
    public override string CategoryBroad => "other";
    public override string CategoryDetailed => "count";
    protected override IEnumerable<string> Arguments => [Object.ToString(), "==" + Count.ToString(CultureInfo.InvariantCulture)];
    public override string Question => $"Are there exactly {Vocabulary.Number(Count)} {(Count == 1 ? Object.ToString() : Object.Plural)}?";
    public override bool Holds(PerceivedScene scene) => scene.Matching(Object).Count() == Count;
}

/// <summary>The background has this colour.</summary>
public sealed record BackgroundTuple(Background Background) : WorldTuple
{
    public override string CategoryBroad => "global";
    public override string CategoryDetailed => "background";
    protected override IEnumerable<string> Arguments => [Vocabulary.Word(Background)];
    public override string Question => $"Is the background {Vocabulary.Word(Background)}?";
    public override bool Holds(PerceivedScene scene) => scene.Background == Background;
}
