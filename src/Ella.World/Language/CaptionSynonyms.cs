using System.Text.RegularExpressions;
using Ella.World.Scenes;

namespace Ella.World.Language;

/// <summary>
/// More words for the training lexicon's colours, shapes, sizes, background nouns and "any object" nouns ("ruby",
/// "navy", "tile", "cone", "petite", "field", …), for the connector's dense captions (<c>ella world train
/// --connector-synonyms</c>). The training lexicon names each colour with one word, so a connector trained on it reads
/// one token per colour and never learns to read the language model's sense of a colour word: the paraphrase set's
/// "crimson" or "azure" is then as foreign to it as to CLIP. Training captions with many words per concept (as a
/// captioning model's dense captions have) ask it to. None of these words is in the paraphrase lexicon, which stays
/// unseen.
/// <para>
/// <see cref="Reword"/> picks, once per caption and concept, the lexicon's word or one of these (so a scene keeps one
/// name for each thing, and the eval set's words stay common), fixing "a"/"an" before a changed word.
/// <see cref="Canonical"/> maps every such word back: the base model's CLIP never saw them, so as a distillation
/// teacher it reads the canonical caption.
/// </para>
/// </summary>
public static class CaptionSynonyms
{
    /// <summary>Each training-lexicon word and the extra words for it (nouns: singular and plural separately, aligned).</summary>
    public static readonly IReadOnlyDictionary<string, string[]> Table = new Dictionary<string, string[]>(StringComparer.Ordinal)
    {
        ["red"] = ["ruby", "cherry", "vermilion"],
        ["green"] = ["lime", "mint", "grassy"],
        ["blue"] = ["navy", "sapphire", "cerulean"],
        ["yellow"] = ["canary", "mustard", "butter"],
        ["purple"] = ["plum", "lavender", "mauve"],
        ["orange"] = ["pumpkin", "apricot", "carrot"],
        ["white"] = ["milky", "pearl", "chalk"],
        ["black"] = ["jet", "coal", "onyx"],
        ["gray"] = ["silver", "pewter", "smoky"],
        ["beige"] = ["cream", "khaki", "oatmeal"],
        ["circle"] = ["dot", "disc"],
        ["circles"] = ["dots", "discs"],
        ["square"] = ["tile", "cube"],
        ["squares"] = ["tiles", "cubes"],
        ["triangle"] = ["cone", "arrowhead"],
        ["triangles"] = ["cones", "arrowheads"],
        ["small"] = ["petite", "compact", "wee"],
        ["large"] = ["giant", "massive", "hefty"],
        ["background"] = ["field", "backing"],
        ["shapes"] = ["forms", "pieces", "elements"],
    };

    /// <summary>How often a concept keeps the lexicon's own word in a reworded caption.</summary>
    public const double KeepProbability = 0.4;

    static readonly Dictionary<string, string> ToCanonical = Table.SelectMany(kv => kv.Value.Select(s => (s, kv.Key)))
        .ToDictionary(p => p.s, p => p.Key, StringComparer.Ordinal);

    static Regex Words(IEnumerable<string> words) =>
        new($@"\b(?:(?<article>[Aa]n?) )?(?<word>{string.Join("|", words.OrderByDescending(w => w.Length).Select(Regex.Escape))})\b",
            RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);

    static readonly Regex CanonicalWords = Words(Table.Keys);
    static readonly Regex SynonymWords = Words(ToCanonical.Keys);

    /// <summary>A plural noun's singular, whose draw the plural shares ("tiles" goes with "tile").</summary>
    static string Concept(string word) => word.EndsWith('s') && Table.ContainsKey(word[..^1]) ? word[..^1] : word;

    /// <summary>The caption with each concept named by one word drawn for it (the lexicon's own with <see cref="KeepProbability"/>).</summary>
    public static string Reword(string caption, WorldRandom rng)
    {
        var chosen = new Dictionary<string, int>(StringComparer.Ordinal); // concept → index into its extra words, −1: its own
        return Replace(CanonicalWords, caption, word =>
        {
            string concept = Concept(word);
            if (!chosen.TryGetValue(concept, out int k))
                chosen[concept] = k = rng.Chance(KeepProbability) ? -1 : rng.Next(Table[concept].Length);
            return k < 0 ? word : Table[word][k];
        });
    }

    /// <summary>The caption with every extra word mapped back to the training lexicon's.</summary>
    public static string Canonical(string caption) => Replace(SynonymWords, caption, word => ToCanonical[word]);

    static string Replace(Regex words, string caption, Func<string, string> map) => words.Replace(caption, m =>
    {
        string found = m.Groups["word"].Value;
        string lower = found.ToLowerInvariant();
        string to = map(lower);
        if (to == lower) return m.Value;
        bool capital = char.IsUpper(found[0]);
        var article = m.Groups["article"];
        if (!article.Success) return capital ? char.ToUpperInvariant(to[0]) + to[1..] : to;
        string a = "aeiou".Contains(to[0]) ? "an" : "a";
        if (char.IsUpper(article.Value[0])) a = char.ToUpperInvariant(a[0]) + a[1..];
        return $"{a} {to}";
    });
}
