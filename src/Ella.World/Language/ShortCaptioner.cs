using Ella.World.Scenes;

namespace Ella.World.Language;

/// <summary>
/// Short captions in the style of web alt-text: at most two groups named, often without colour or size, never a
/// relation; lower case, no full stop; sometimes only "geometric shapes". Half of them name the background (the
/// picture's largest region): a base model learns to read its text from the words that explain the most pixels, and
/// with the background in 15% of its captions a 3000-step base learnt to ignore its text entirely.
/// </summary>
public static class ShortCaptioner
{
    static readonly string[] Prefixes = ["a photo of ", "image of ", "an illustration of ", "clipart ", "icon: ", "picture of "];
    static readonly string[] GenericCaptions = ["geometric shapes", "simple shapes", "abstract shapes", "shapes"];

    public static string Caption(SceneFacts facts, Lexicon lex, WorldRandom rng)
    {
        if (rng.Chance(0.08))
        {
            string g = rng.Pick(GenericCaptions);
            return rng.Chance(0.3) ? $"{g} on {rng.Pick(lex.BackgroundColors[facts.Scene.Background])}" : g;
        }
        int named = Math.Min(facts.Groups.Count, rng.Chance(0.5) ? 1 : 2);
        var groups = facts.Groups.Take(named).ToList(); // groups are already in random order
        var phrases = groups.Select(g => Phrase(g, lex, rng)).ToList();
        string text = phrases.Count == 1 ? phrases[0] : rng.Next(3) switch
        {
            0 => $"{phrases[0]} and {phrases[1]}",
            1 => $"{phrases[0]}, {phrases[1]}",
            _ => $"{phrases[0]} with {phrases[1]}",
        };
        if (rng.Chance(0.35)) text = rng.Pick(Prefixes) + text;
        if (rng.Chance(0.5))
        {
            string bg = rng.Pick(lex.BackgroundColors[facts.Scene.Background]);
            text += rng.Chance(0.5) ? $" on {bg}" : $" on a {bg} {rng.Pick(lex.BackgroundNouns)}";
        }
        return text;
    }

    static string Phrase(ObjectGroup g, Lexicon lex, WorldRandom rng)
    {
        var words = new List<string>();
        if (rng.Chance(0.2)) words.Add(rng.Pick(lex.Sizes[g.Kind.Size]));
        if (rng.Chance(0.55)) words.Add(rng.Pick(lex.Colors[g.Kind.Color]));
        var noun = rng.Pick(lex.Shapes[g.Kind.Shape]);
        if (g.Count > 1)
        {
            words.Add(noun.Plural);
            if (rng.Chance(0.5)) words.Insert(0, Vocabulary.Number(g.Count));
        }
        else
        {
            words.Add(noun.Singular);
            if (rng.Chance(0.6)) words.Insert(0, "aeiou".Contains(words[0][0]) ? "an" : "a");
        }
        return string.Join(' ', words);
    }
}
