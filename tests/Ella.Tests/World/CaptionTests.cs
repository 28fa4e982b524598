using System.Text.RegularExpressions;
using Ella.World.Language;
using Ella.World.Questions;
using Ella.World.Scenes;
using Ella.World.Splits;
using Xunit.Abstractions;

namespace Ella.Tests.World;

public sealed class CaptionTests(ITestOutputHelper output)
{
    static readonly Lazy<List<WorldItem>> Training = new(() => Enumerable.Range(0, 20000).Select(i => WorldSplits.Item(WorldSplit.Train, i)).ToList());

    static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Regex> Patterns = new();

    static bool HasPhrase(string text, string phrase) =>
        Patterns.GetOrAdd(phrase, p => new Regex($@"(?<![\w-]){Regex.Escape(p)}(?![\w-])", RegexOptions.IgnoreCase | RegexOptions.Compiled)).IsMatch(text);

    /// <summary>Words of the paraphrase lexicon that the training lexicon does not have.</summary>
    static List<string> NovelWords()
    {
        static IEnumerable<string> Words(Lexicon l) => l.Phrases.SelectMany(p => p.Split(' '));
        var training = Words(Lexicon.Training).ToHashSet();
        return Words(Lexicon.Paraphrase).Where(w => !training.Contains(w)).Distinct().Order().ToList();
    }

    [Fact]
    public void Paraphrase_words_never_occur_in_20000_training_captions()
    {
        var novel = NovelWords();
        foreach (var w in new[] { "crimson", "azure", "ball", "box", "beneath", "west" }) Assert.Contains(w, novel);
        Assert.True(novel.Count >= 40, $"only {novel.Count} novel words");
        var pattern = new Regex($@"(?<![\w-])({string.Join("|", novel.Select(Regex.Escape))})(?![\w-])", RegexOptions.IgnoreCase | RegexOptions.Compiled);
        foreach (var item in Training.Value)
        {
            Assert.False(pattern.IsMatch(item.DenseCaption), $"{item.Id}: '{pattern.Match(item.DenseCaption).Value}' in '{item.DenseCaption}'");
            Assert.False(pattern.IsMatch(item.ShortCaption), $"{item.Id}: '{pattern.Match(item.ShortCaption).Value}' in '{item.ShortCaption}'");
        }
        // ... and the paraphrase prompts are made of them: every prompt has several, and together they use them all.
        var used = new HashSet<string>();
        for (int i = 0; i < WorldSplits.ParaphraseCount; i++)
        {
            var text = WorldSplits.Item(WorldSplit.Paraphrase, i).DenseCaption;
            var found = pattern.Matches(text).Select(m => m.Value.ToLowerInvariant()).ToList();
            Assert.True(found.Count >= 3, $"paraphrase{i}: '{text}'");
            used.UnionWith(found);
        }
        Assert.Equal(novel.Count, used.Count);
        output.WriteLine($"{novel.Count} novel words, none in 20,000 training captions (dense + short): {string.Join(", ", novel)}");
    }

    [Fact]
    public void Dense_captions_name_every_object_with_its_attributes_and_the_background()
    {
        foreach (var item in Training.Value.Take(3000).Concat(Enumerable.Range(0, 100).Select(i => WorldSplits.Item(WorldSplit.Paraphrase, i))))
        {
            var lex = item.Split == WorldSplit.Paraphrase ? Lexicon.Paraphrase : Lexicon.Training;
            string text = item.DenseCaption;
            Assert.Matches(@"^[A-Z].*\.$", text);
            foreach (var g in item.Facts.Groups)
            {
                Assert.Contains(lex.Colors[g.Kind.Color], w => HasPhrase(text, w));
                Assert.Contains(lex.Sizes[g.Kind.Size], w => HasPhrase(text, w));
                Assert.Contains(lex.Shapes[g.Kind.Shape], n => HasPhrase(text, g.Count > 1 ? n.Plural : n.Singular));
                if (g.Count > 1) Assert.True(HasPhrase(text, Vocabulary.Number(g.Count)), $"{item.Id}: count of {g.Kind} missing in '{text}'");
            }
            Assert.Contains(lex.BackgroundColors[item.Scene.Background], w => HasPhrase(text, w));
            Assert.Contains(lex.BackgroundNouns, w => HasPhrase(text, w));
            foreach (var r in item.Facts.Relations) Assert.Contains(lex.Relations[r.Relation], w => HasPhrase(text, w));
        }
    }

    [Fact]
    public void Short_captions_are_alt_text()
    {
        var relationWords = Lexicon.Training.Relations.Values.SelectMany(v => v).ToList();
        var shapeNouns = Lexicon.Training.Shapes.Values.SelectMany(v => v).SelectMany(n => new[] { n.Singular, n.Plural }).ToList();
        int withColor = 0, n = 0;
        foreach (var item in Training.Value.Take(5000))
        {
            string text = item.ShortCaption;
            n++;
            Assert.DoesNotContain(relationWords, w => HasPhrase(text, w));
            Assert.InRange(shapeNouns.Count(w => HasPhrase(text, w)), 0, 2);
            Assert.True(text.Split(' ').Length <= 14, text);
            if (Lexicon.Training.Colors.Values.SelectMany(v => v).Any(w => HasPhrase(text, w))) withColor++;
        }
        Assert.InRange(withColor / (double)n, 0.3, 0.8); // often, not always, with a colour
    }

    /// <summary>A caption's skeleton: every lexicon phrase and number replaced by its category.</summary>
    static string Skeleton(string text)
    {
        var lex = Lexicon.Training;
        var replacements = new List<(string Phrase, string Tag)>();
        replacements.AddRange(lex.Relations.Values.SelectMany(v => v).Select(p => (p, "REL")));
        replacements.AddRange(lex.Shapes.Values.SelectMany(v => v).SelectMany(n => new[] { (n.Plural, "NOUNS"), (n.Singular, "NOUN") }));
        replacements.AddRange(lex.Generic.Select(p => (p, "NOUNS")));
        replacements.AddRange(lex.Colors.Values.Concat(lex.BackgroundColors.Values).SelectMany(v => v).Select(p => (p, "COLOR")));
        replacements.AddRange(lex.Sizes.Values.SelectMany(v => v).Select(p => (p, "SIZE")));
        replacements.AddRange(lex.BackgroundNouns.Select(p => (p, "BG")));
        replacements.AddRange(Vocabulary.NumberWords.Skip(2).Select(p => (p, "NUM")));
        string s = text.ToLowerInvariant();
        foreach (var (p, tag) in replacements.OrderByDescending(r => r.Phrase.Length))
            s = Patterns.GetOrAdd(p, p => new Regex($@"(?<![\w-]){Regex.Escape(p)}(?![\w-])", RegexOptions.IgnoreCase | RegexOptions.Compiled)).Replace(s, tag);
        return Regex.Replace(s, @"\b(a|an)\b", "A");
    }

    [Fact]
    public void No_single_template_dominates()
    {
        var items = Training.Value.Take(5000).ToList();
        var byObjects = items.GroupBy(i => i.Scene.Objects.Count);
        foreach (var group in byObjects)
        {
            var skeletons = group.GroupBy(i => Skeleton(i.DenseCaption)).Select(g => g.Count()).OrderDescending().ToList();
            double top = skeletons[0] / (double)group.Count();
            output.WriteLine($"{group.Key} object(s): {group.Count()} captions, {skeletons.Count} distinct skeletons, most common {top:P1}");
            Assert.True(top < 0.05, $"{group.Key} object(s): one skeleton is {top:P1} of the captions");
        }
        var first = items.GroupBy(i => string.Join(' ', i.DenseCaption.Split(' ').Take(2))).Max(g => g.Count()) / (double)items.Count;
        output.WriteLine($"most common opening two words: {first:P1}");
        Assert.True(first < 0.15);
    }
}
