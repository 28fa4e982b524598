using Ella.World.Questions;
using Ella.World.Scenes;

namespace Ella.World.Language;

/// <summary>A noun with its plural.</summary>
public readonly record struct Noun(string Singular, string Plural);

/// <summary>
/// The words captions are made of. <see cref="Training"/> is the only lexicon training captions use;
/// <see cref="Paraphrase"/> names the same things with words that never occur in training captions ("crimson",
/// "azure", "ball", "box", "beneath", "to the west of", …), to test what a pretrained language model brings.
/// Function words (articles, verbs, sentence frames) are shared.
/// </summary>
public sealed class Lexicon
{
    public required string Name { get; init; }
    public required IReadOnlyDictionary<ObjectColor, string[]> Colors { get; init; }
    public required IReadOnlyDictionary<Shape, Noun[]> Shapes { get; init; }
    public required IReadOnlyDictionary<ObjectSize, string[]> Sizes { get; init; }
    public required IReadOnlyDictionary<Relation, string[]> Relations { get; init; }
    public required IReadOnlyDictionary<Background, string[]> BackgroundColors { get; init; }
    public required string[] BackgroundNouns { get; init; }
    /// <summary>Plural nouns for "any object" (total counts, which are at least two).</summary>
    public required string[] Generic { get; init; }

    /// <summary>Every content phrase of the lexicon.</summary>
    public IEnumerable<string> Phrases =>
        Colors.Values.SelectMany(v => v).Concat(Sizes.Values.SelectMany(v => v)).Concat(Relations.Values.SelectMany(v => v))
            .Concat(BackgroundColors.Values.SelectMany(v => v)).Concat(BackgroundNouns)
            .Concat(Generic).Concat(Shapes.Values.SelectMany(v => v).SelectMany(n => new[] { n.Singular, n.Plural }));

    public static readonly Lexicon Training = new()
    {
        Name = "training",
        Colors = Vocabulary.Colors.ToDictionary(c => c, c => new[] { Vocabulary.Word(c) }),
        Shapes = new Dictionary<Shape, Noun[]>
        {
            [Shape.Circle] = [new("circle", "circles"), new("disk", "disks")],
            [Shape.Square] = [new("square", "squares")],
            [Shape.Triangle] = [new("triangle", "triangles")],
        },
        Sizes = new Dictionary<ObjectSize, string[]>
        {
            [ObjectSize.Small] = ["small", "little"],
            [ObjectSize.Large] = ["large", "big"],
        },
        Relations = new Dictionary<Relation, string[]>
        {
            [Relation.LeftOf] = ["to the left of", "left of", "on the left of"],
            [Relation.RightOf] = ["to the right of", "right of", "on the right of"],
            [Relation.Above] = ["above", "over"],
            [Relation.Below] = ["below", "under", "underneath"],
        },
        BackgroundColors = new Dictionary<Background, string[]>
        {
            [Background.White] = ["white"],
            [Background.Black] = ["black"],
            [Background.Gray] = ["gray", "grey"],
            [Background.Beige] = ["beige"],
        },
        BackgroundNouns = ["background", "backdrop"],
        Generic = ["shapes", "objects", "figures"],
    };

    public static readonly Lexicon Paraphrase = new()
    {
        Name = "paraphrase",
        Colors = new Dictionary<ObjectColor, string[]>
        {
            [ObjectColor.Red] = ["crimson", "scarlet"],
            [ObjectColor.Green] = ["emerald", "jade"],
            [ObjectColor.Blue] = ["azure", "cobalt"],
            [ObjectColor.Yellow] = ["golden", "lemon"],
            [ObjectColor.Purple] = ["violet", "lilac"],
            [ObjectColor.Orange] = ["tangerine", "amber"],
            [ObjectColor.White] = ["ivory", "snowy"],
            [ObjectColor.Black] = ["ebony", "inky"],
        },
        Shapes = new Dictionary<Shape, Noun[]>
        {
            [Shape.Circle] = [new("ball", "balls"), new("orb", "orbs")],
            [Shape.Square] = [new("box", "boxes"), new("block", "blocks")],
            [Shape.Triangle] = [new("wedge", "wedges"), new("pyramid", "pyramids")],
        },
        Sizes = new Dictionary<ObjectSize, string[]>
        {
            [ObjectSize.Small] = ["tiny", "miniature"],
            [ObjectSize.Large] = ["huge", "enormous"],
        },
        Relations = new Dictionary<Relation, string[]>
        {
            [Relation.LeftOf] = ["to the west of"],
            [Relation.RightOf] = ["to the east of"],
            [Relation.Above] = ["to the north of"],
            [Relation.Below] = ["beneath", "to the south of"],
        },
        BackgroundColors = new Dictionary<Background, string[]>
        {
            [Background.White] = ["ivory", "snowy"],
            [Background.Black] = ["ebony", "inky"],
            [Background.Gray] = ["slate", "ashen"],
            [Background.Beige] = ["sandy", "tan"],
        },
        BackgroundNouns = ["canvas", "surface"],
        Generic = ["items", "things"],
    };
}
