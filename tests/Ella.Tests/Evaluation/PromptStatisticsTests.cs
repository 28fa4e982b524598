using System.Text.Json;
using Ella.Evaluation.DpgBench;
using Ella.Evaluation.Linguistics;
using Ella.Tests.Infrastructure;
using Ella.Text;

namespace Ella.Tests.Evaluation;

/// <summary>The paper's Tab. 2 statistics for the DPG-Bench prompts, against the per-prompt fixture counts.</summary>
public class PromptStatisticsTests(Xunit.Abstractions.ITestOutputHelper output)
{
    static readonly Lazy<(List<PromptCounts> Counts, JsonElement PerPrompt, JsonElement Results)> Computed = new(() =>
    {
        var clip = ClipTokenizer.FromPretrained(Path.Combine(Fixtures.SharedData, "clip"));
        var tagger = PerceptronTagger.Load(Path.Combine(Fixtures.SharedData, "nltk", "averaged_perceptron_tagger_eng"));
        var prompts = DpgBenchCsv.LoadPrompts(Path.Combine(Fixtures.SharedData, "dpg_bench", "prompts"));
        var counts = prompts.Select(kv => PromptStatistics.Count(kv.Key + ".txt", kv.Value, clip, tagger)).ToList();
        using var per = Fixtures.Json("text", "dpg-stats", "per_prompt.json");
        using var res = Fixtures.Json("text", "dpg-stats", "results.json");
        return (counts, per.RootElement.Clone(), res.RootElement.Clone());
    });

    [Fact]
    public void Words_and_clip_tokens_equal_every_prompt()
    {
        var (counts, per, _) = Computed.Value;
        foreach (var c in counts)
        {
            var e = per.GetProperty(c.Name);
            Assert.True(e.GetProperty("words_whitespace_split").GetInt32() == c.Words, $"{c.Name} words");
            Assert.True(e.GetProperty("clip_tokens_with_bos_eos").GetInt32() == c.ClipTokens, $"{c.Name} CLIP tokens");
        }
    }

    [Fact]
    public void Pos_counts_match_at_least_98_percent_of_prompts_and_the_paper_row()
    {
        var (counts, per, results) = Computed.Value;
        int nn = 0, jj = 0, inn = 0;
        foreach (var c in counts)
        {
            var e = per.GetProperty(c.Name);
            if (e.GetProperty("NN").GetInt32() == c.Nouns) nn++;
            if (e.GetProperty("JJ_RB").GetInt32() == c.AdjectivesAdverbs) jj++;
            if (e.GetProperty("IN").GetInt32() == c.Prepositions) inn++;
        }
        output.WriteLine($"per-prompt agreement: NN {nn}/{counts.Count}, JJ/RB {jj}/{counts.Count}, IN {inn}/{counts.Count}");
        Assert.True(nn >= 0.98 * counts.Count, $"NN matches {nn}/{counts.Count}");
        Assert.True(jj >= 0.98 * counts.Count, $"JJ/RB matches {jj}/{counts.Count}");
        Assert.True(inn >= 0.98 * counts.Count, $"IN matches {inn}/{counts.Count}");

        var s = PromptStatistics.Summarize("dpg", counts);
        var paper = results.GetProperty("paper_tab2_dpg_bench");
        output.WriteLine($"ours: words {s.Words:F4} NN {s.Nouns:F4} JJ/RB {s.AdjectivesAdverbs:F4} IN {s.Prepositions:F4} tokens {s.ClipTokens:F4} #DN {s.DistinctNouns}");
        Assert.InRange(s.Words, paper.GetProperty("words").GetDouble() - 0.05, paper.GetProperty("words").GetDouble() + 0.05);
        Assert.InRange(s.Nouns!.Value, paper.GetProperty("NN").GetDouble() - 0.05, paper.GetProperty("NN").GetDouble() + 0.05);
        Assert.InRange(s.AdjectivesAdverbs!.Value, paper.GetProperty("JJ_RB").GetDouble() - 0.05, paper.GetProperty("JJ_RB").GetDouble() + 0.05);
        Assert.InRange(s.Prepositions!.Value, paper.GetProperty("IN").GetDouble() - 0.05, paper.GetProperty("IN").GetDouble() + 0.05);
        Assert.InRange(s.ClipTokens!.Value, paper.GetProperty("clip_tokens").GetDouble() - 0.05, paper.GetProperty("clip_tokens").GetDouble() + 0.05);
        Assert.InRange(s.DistinctNouns!.Value, paper.GetProperty("distinct_nouns").GetInt32() - 5, paper.GetProperty("distinct_nouns").GetInt32() + 5);
    }

    [Fact]
    public void Word_tokenize_counts_match_most_prompts()
    {
        var (_, per, _) = Computed.Value;
        var prompts = DpgBenchCsv.LoadPrompts(Path.Combine(Fixtures.SharedData, "dpg_bench", "prompts"));
        int same = prompts.Count(kv => TreebankWordTokenizer.WordTokenize(kv.Value.ToLowerInvariant()).Count == per.GetProperty(kv.Key + ".txt").GetProperty("word_tokenize_lowercased_tokens").GetInt32());
        output.WriteLine($"word_tokenize token counts equal for {same}/{prompts.Count} prompts");
        Assert.True(same >= 0.98 * prompts.Count, $"{same}/{prompts.Count}");
    }
}

public sealed class DpgStatsCommandTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-stats-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void Json_and_plot_for_a_prompt_folder()
    {
        string prompts = Path.Combine(_dir, "prompts");
        Directory.CreateDirectory(prompts);
        foreach (var name in new[] { "0.txt", "286.txt", "countbench4.txt" })
            File.Copy(Path.Combine(Fixtures.SharedData, "dpg_bench", "prompts", name), Path.Combine(prompts, name));
        string plot = Path.Combine(_dir, "chart.png");
        var r = CliRunner.Run("dpg", "stats", "--prompts", prompts, "--clip-vocab", Path.Combine(Fixtures.SharedData, "clip"),
            "--tagger", Path.Combine(Fixtures.SharedData, "nltk", "averaged_perceptron_tagger_eng"), "--json", "--plot", plot);
        Assert.True(r.ExitCode == 0, r.Error);
        using var doc = JsonDocument.Parse(r.Out);
        using var per = Fixtures.Json("text", "dpg-stats", "per_prompt.json");
        var perPrompt = doc.RootElement.GetProperty("sets")[0].GetProperty("per_prompt");
        foreach (var name in new[] { "0", "286", "countbench4" })
        {
            var ours = perPrompt.GetProperty(name);
            var expected = per.RootElement.GetProperty(name + ".txt");
            Assert.Equal(expected.GetProperty("NN").GetInt32(), ours.GetProperty("nn").GetInt32());
            Assert.Equal(expected.GetProperty("words_whitespace_split").GetInt32(), ours.GetProperty("words").GetInt32());
            Assert.Equal(expected.GetProperty("clip_tokens_with_bos_eos").GetInt32(), ours.GetProperty("clip_tokens").GetInt32());
        }
        Assert.True(Imaging.RgbImage.Load(plot).Width >= 560);
    }

    [Fact]
    public void A_missing_folder_is_named()
    {
        var r = CliRunner.Run("dpg", "stats", "--prompts", Path.Combine(_dir, "nope"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("nope", r.Error);
    }
}
