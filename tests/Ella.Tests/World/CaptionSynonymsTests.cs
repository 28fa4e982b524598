using System.Text.RegularExpressions;
using Ella.World.Language;
using Ella.World.Scenes;
using Ella.World.Splits;

namespace Ella.Tests.World;

/// <summary>
/// <c>ella world train --connector-synonyms</c>: the connector's dense captions name things with more words than the
/// training lexicon has, none of them the paraphrase set's, and the teacher can read them back in the lexicon's words.
/// </summary>
public sealed class CaptionSynonymsTests
{
    static IEnumerable<string> Words(Lexicon l) => l.Phrases.SelectMany(p => p.Split(' '));
    static IEnumerable<string> Synonyms => CaptionSynonyms.Table.Values.SelectMany(v => v);

    [Fact]
    public void The_extra_words_are_neither_paraphrase_words_nor_training_words_and_each_has_one_meaning()
    {
        var paraphrase = Words(Lexicon.Paraphrase).ToHashSet();
        var training = Words(Lexicon.Training).ToHashSet();
        foreach (var word in Synonyms)
        {
            Assert.DoesNotContain(word, paraphrase);
            Assert.DoesNotContain(word, training);
            Assert.Matches("^[a-z]+$", word);
        }
        Assert.Equal(Synonyms.Count(), Synonyms.Distinct().Count());
        foreach (var canonical in CaptionSynonyms.Table.Keys) Assert.Contains(canonical, training);
        // Every colour of the training lexicon has extra words (the concept the paraphrase set renames most).
        foreach (var colour in Lexicon.Training.Colors.Values.SelectMany(v => v)) Assert.True(CaptionSynonyms.Table.ContainsKey(colour), colour);
    }

    [Fact]
    public void Reworded_training_captions_map_back_to_themselves_and_name_each_concept_one_way()
    {
        int changed = 0;
        var synonymPattern = new Regex($@"\b({string.Join("|", Synonyms)})\b", RegexOptions.IgnoreCase);
        var seen = new HashSet<string>();
        for (int i = 0; i < 2000; i++)
        {
            string dense = WorldSplits.Item(WorldSplit.Train, i).DenseCaption;
            string reworded = CaptionSynonyms.Reword(dense, new WorldRandom((ulong)i + 1));
            Assert.Equal(dense, CaptionSynonyms.Canonical(reworded));
            Assert.Matches(@"^[A-Z].*\.$", reworded);
            Assert.DoesNotMatch(@"\b[Aa] [aeiou]|\b[Aa]n [^aeiou\W]", reworded);
            var used = synonymPattern.Matches(reworded).Select(m => m.Value.ToLowerInvariant()).ToList();
            seen.UnionWith(used);
            if (reworded != dense) changed++;
            // One name per concept in a caption: a concept's synonym never appears beside its lexicon word or another
            // synonym, and a noun's plural is the same word's ("tile" with "tiles").
            foreach (var (canonical, extra) in CaptionSynonyms.Table)
            {
                var names = extra.Where(used.Contains).ToList();
                Assert.True(names.Count <= 1, $"'{reworded}' names {canonical} as {string.Join(", ", names)}");
                if (names.Count == 1) Assert.DoesNotMatch($@"(?i)\b{canonical}\b", reworded);
                if (CaptionSynonyms.Table.TryGetValue(canonical + "s", out var plural) && names.Count == 1)
                {
                    int k = Array.IndexOf(extra, names[0]);
                    Assert.False(plural.Where((p, j) => j != k).Any(used.Contains), $"'{reworded}': {names[0]} with another plural");
                    Assert.DoesNotMatch($@"(?i)\b{canonical}s\b", reworded);
                }
            }
        }
        Assert.InRange(changed, 1500, 2000);
        Assert.Equal(Synonyms.Order(), seen.Order()); // every extra word occurs
    }

    [Fact]
    public void Articles_follow_the_new_word()
    {
        var results = Enumerable.Range(0, 200).Select(s => CaptionSynonyms.Reword("An orange square lies on a white background.", new WorldRandom((ulong)s))).ToHashSet();
        Assert.Contains(results, r => r.StartsWith("A pumpkin ") || r.StartsWith("A carrot "));
        Assert.Contains(results, r => r.StartsWith("An apricot ") || r.StartsWith("An orange "));
        Assert.All(results, r => Assert.Matches(@"^(A (pumpkin|carrot)|An (apricot|orange)) (square|tile|cube) lies on a (white|milky|pearl|chalk) (background|field|backing)\.$", r));
        Assert.Equal("An orange square lies on a white background.", CaptionSynonyms.Canonical("A pumpkin tile lies on a pearl field."));
    }
}
