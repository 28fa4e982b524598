using Ella.Evaluation.Linguistics;
using Ella.Text;

namespace Ella.Evaluation.DpgBench;

/// <summary>Counts of one prompt, with the definitions that reproduce the ELLA paper's Tab. 2.</summary>
public sealed record PromptCounts(string Name, int Words, int? ClipTokens, int? Nouns, int? AdjectivesAdverbs, int? Prepositions, IReadOnlyList<string> NounTokens);

/// <summary>Averages per prompt over a prompt set, and the number of distinct nouns.</summary>
public sealed record PromptSetStatistics(string Name, int Prompts, double Words, double? Nouns, double? AdjectivesAdverbs, double? Prepositions, double? ClipTokens, int? DistinctNouns);

/// <summary>
/// The paper's prompt statistics: words = whitespace split of the raw text; CLIP tokens = untruncated ids including
/// start and end; NN / JJ+RB / IN = NLTK perceptron tags (NN*, JJ* or RB*, IN) of word_tokenize(lower-cased text),
/// tagged as one sequence; #DN = distinct tokens tagged NN*.
/// </summary>
public static class PromptStatistics
{
    /// <summary>ELLA paper, Tab. 2, DPG-Bench row.</summary>
    public static readonly PromptSetStatistics PaperDpgBench = new("ELLA paper (DPG-Bench)", 1065, 67.12, 20.90, 11.59, 9.07, 83.91, 4286);

    public static PromptCounts Count(string name, string text, ClipTokenizer? clip, PerceptronTagger? tagger)
    {
        int words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
        int? clipTokens = clip?.EncodeIds(text).Length;
        if (tagger == null) return new PromptCounts(name, words, clipTokens, null, null, null, []);
        var tagged = tagger.Tag(TreebankWordTokenizer.WordTokenize(text.ToLowerInvariant()));
        var nouns = tagged.Where(t => t.Tag.StartsWith("NN", StringComparison.Ordinal)).Select(t => t.Word).ToList();
        return new PromptCounts(name, words, clipTokens, nouns.Count,
            tagged.Count(t => t.Tag.StartsWith("JJ", StringComparison.Ordinal) || t.Tag.StartsWith("RB", StringComparison.Ordinal)),
            tagged.Count(t => t.Tag == "IN"), nouns);
    }

    public static PromptSetStatistics Summarize(string name, IReadOnlyList<PromptCounts> counts)
    {
        if (counts.Count == 0) throw new EllaException($"{name}: no prompts");
        double? Avg(Func<PromptCounts, int?> f) => counts.All(c => f(c) != null) ? counts.Average(c => (double)f(c)!.Value) : null;
        bool tagged = counts.All(c => c.Nouns != null);
        return new PromptSetStatistics(name, counts.Count, counts.Average(c => (double)c.Words), Avg(c => c.Nouns), Avg(c => c.AdjectivesAdverbs),
            Avg(c => c.Prepositions), Avg(c => c.ClipTokens), tagged ? counts.SelectMany(c => c.NounTokens).Distinct(StringComparer.Ordinal).Count() : null);
    }
}
