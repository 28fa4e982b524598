using System.Text.Json;

namespace Ella.Evaluation.Linguistics;

/// <summary>
/// Inference of NLTK's averaged-perceptron POS tagger (the model behind <c>nltk.pos_tag</c>), from NLTK's own JSON
/// files (<c>averaged_perceptron_tagger_eng.{weights,tagdict,classes}.json</c>). Frequent unambiguous words come from
/// the tag dictionary; others get the best-scoring tag of a feature-template dot product (ties: the larger tag name).
/// </summary>
public sealed class PerceptronTagger
{
    static readonly string[] Start = ["-START-", "-START2-"];
    static readonly string[] End = ["-END-", "-END2-"];

    readonly Dictionary<string, Dictionary<string, double>> _weights;
    readonly Dictionary<string, string> _tagdict;
    readonly string[] _classes;

    public PerceptronTagger(Dictionary<string, Dictionary<string, double>> weights, Dictionary<string, string> tagdict, IEnumerable<string> classes)
    {
        _weights = weights;
        _tagdict = tagdict;
        _classes = classes.Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>Loads a folder with the three JSON files (nltk_data/taggers/averaged_perceptron_tagger_eng).</summary>
    public static PerceptronTagger Load(string folder)
    {
        string Find(string kind)
        {
            var f = Directory.Exists(folder) ? Directory.GetFiles(folder, $"*.{kind}.json").FirstOrDefault() : null;
            return f ?? throw new EllaException($"{folder}: no *.{kind}.json (NLTK's averaged_perceptron_tagger_eng files: weights, tagdict, classes)");
        }
        try
        {
            var weights = JsonSerializer.Deserialize<Dictionary<string, Dictionary<string, double>>>(File.ReadAllText(Find("weights")))!;
            var tagdict = JsonSerializer.Deserialize<Dictionary<string, string>>(File.ReadAllText(Find("tagdict")))!;
            var classes = JsonSerializer.Deserialize<string[]>(File.ReadAllText(Find("classes")))!;
            return new PerceptronTagger(weights, tagdict, classes);
        }
        catch (JsonException e) { throw new EllaException($"{folder}: tagger JSON is not in NLTK's format ({e.Message})", e); }
    }

    /// <summary>The nltk_data folder NLTK would use: $NLTK_DATA, else ~/nltk_data, else /usr/share/nltk_data.</summary>
    public static string? DefaultFolder()
    {
        var roots = new List<string>();
        if (Environment.GetEnvironmentVariable("NLTK_DATA") is { Length: > 0 } env) roots.AddRange(env.Split(Path.PathSeparator));
        roots.Add(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), "nltk_data"));
        roots.AddRange(["/usr/share/nltk_data", "/usr/local/share/nltk_data", "/usr/lib/nltk_data"]);
        return roots.Select(r => Path.Combine(r, "taggers", "averaged_perceptron_tagger_eng")).FirstOrDefault(Directory.Exists);
    }

    static string Normalize(string word)
    {
        if (word.Contains('-') && word[0] != '-') return "!HYPHEN";
        if (word.Length == 4 && word.All(char.IsDigit)) return "!YEAR";
        if (word.Length > 0 && char.IsDigit(word[0])) return "!DIGITS";
        return word.ToLowerInvariant();
    }

    static string Suffix(string s) => s.Length <= 3 ? s : s[^3..];

    public List<(string Word, string Tag)> Tag(IReadOnlyList<string> tokens)
    {
        var context = Start.Concat(tokens.Select(Normalize)).Concat(End).ToArray();
        string prev = Start[0], prev2 = Start[1];
        var output = new List<(string, string)>(tokens.Count);
        var scores = new Dictionary<string, double>();
        for (int i = 0; i < tokens.Count; i++)
        {
            string word = tokens[i];
            if (!_tagdict.TryGetValue(word, out var tag))
            {
                int c = i + Start.Length;
                string[] features =
                [
                    "bias", "i suffix " + Suffix(word), "i pref1 " + (word.Length > 0 ? word[0].ToString() : ""), "i-1 tag " + prev,
                    "i-2 tag " + prev2, $"i tag+i-2 tag {prev} {prev2}", "i word " + context[c], $"i-1 tag+i word {prev} {context[c]}",
                    "i-1 word " + context[c - 1], "i-1 suffix " + Suffix(context[c - 1]), "i-2 word " + context[c - 2],
                    "i+1 word " + context[c + 1], "i+1 suffix " + Suffix(context[c + 1]), "i+2 word " + context[c + 2],
                ];
                scores.Clear();
                foreach (var f in features.Distinct())
                {
                    if (!_weights.TryGetValue(f, out var w)) continue;
                    int count = features.Count(x => x == f);
                    foreach (var (label, weight) in w) scores[label] = scores.GetValueOrDefault(label) + count * weight;
                }
                tag = _classes[0];
                double best = scores.GetValueOrDefault(tag);
                foreach (var label in _classes)
                {
                    double s = scores.GetValueOrDefault(label);
                    if (s > best || (s == best && string.CompareOrdinal(label, tag) > 0)) { best = s; tag = label; }
                }
            }
            output.Add((word, tag));
            prev2 = prev;
            prev = tag;
        }
        return output;
    }
}
