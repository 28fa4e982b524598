using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Ella.Evaluation.DpgBench;
using Ella.Evaluation.Linguistics;
using Ella.Imaging;
using Ella.Text;

namespace Ella.Cli.Commands.Dpg;

/// <summary><c>ella dpg stats</c>: the paper's Tab. 1/2 prompt statistics for one or more prompt folders.</summary>
public static class DpgStatsCommand
{
    public static Command Create(CliContext ctx)
    {
        var prompts = new Option<string[]>("--prompts") { Description = "Prompt folder(s) of .txt files (repeat to compare sets)", Required = true, AllowMultipleArgumentsPerToken = true };
        var clipVocab = new Option<string?>("--clip-vocab") { Description = "CLIP tokenizer: folder with vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz (for the token column)" };
        var tagger = new Option<string?>("--tagger") { Description = "NLTK averaged_perceptron_tagger_eng folder (default: $NLTK_DATA or ~/nltk_data); for NN, JJ/RB, IN, #DN" };
        var json = new Option<bool>("--json") { Description = "Print the statistics as JSON (with per-prompt counts under \"prompts\")" };
        var plot = new Option<string?>("--plot") { Description = "Write a bar chart PNG comparing the prompt sets and the paper's DPG-Bench row" };
        var command = new Command("stats", "Prompt statistics as in the ELLA paper's Tab. 2: words, NN, JJ/RB, IN, CLIP tokens, distinct nouns")
            { prompts, clipVocab, tagger, json, plot };
        command.SetAction(p => Run(ctx, p.GetValue(prompts)!, p.GetValue(clipVocab), p.GetValue(tagger), p.GetValue(json), p.GetValue(plot)));
        return command;
    }

    static int Run(CliContext ctx, string[] folders, string? clipPath, string? taggerPath, bool asJson, string? plot)
    {
        var clip = clipPath != null ? ClipTokenizer.FromPretrained(clipPath) : null;
        string? taggerFolder = taggerPath ?? PerceptronTagger.DefaultFolder();
        var tagger = taggerFolder != null ? PerceptronTagger.Load(taggerFolder) : null;
        if (tagger == null) ctx.Error.WriteLine("note: no POS tagger (--tagger DIR, or nltk_data/taggers/averaged_perceptron_tagger_eng): NN, JJ/RB, IN and #DN are not computed");
        if (clip == null) ctx.Error.WriteLine("note: no CLIP vocabulary (--clip-vocab): CLIP tokens are not computed");
        var sets = new List<(PromptSetStatistics Stats, List<PromptCounts> Counts)>();
        foreach (var folder in folders)
        {
            var texts = DpgBenchCsv.LoadPrompts(folder);
            var counts = texts.Select(kv => PromptStatistics.Count(kv.Key, kv.Value, clip, tagger)).ToList();
            sets.Add((PromptStatistics.Summarize(Path.GetFileName(Path.GetFullPath(folder).TrimEnd('/')), counts), counts));
        }
        var rows = sets.Select(s => s.Stats).Append(PromptStatistics.PaperDpgBench).ToList();
        if (asJson)
        {
            ctx.Out.WriteLine(JsonSerializer.Serialize(new
            {
                sets = sets.Select(s => new
                {
                    name = s.Stats.Name, prompts = s.Stats.Prompts, words = s.Stats.Words, nn = s.Stats.Nouns, jj_rb = s.Stats.AdjectivesAdverbs,
                    @in = s.Stats.Prepositions, clip_tokens = s.Stats.ClipTokens, distinct_nouns = s.Stats.DistinctNouns,
                    per_prompt = s.Counts.ToDictionary(c => c.Name, c => new { words = c.Words, nn = c.Nouns, jj_rb = c.AdjectivesAdverbs, @in = c.Prepositions, clip_tokens = c.ClipTokens }),
                }),
                paper = PromptStatistics.PaperDpgBench,
            }, new JsonSerializerOptions { WriteIndented = true }));
        }
        else
        {
            var inv = CultureInfo.InvariantCulture;
            string F(double? v) => v is { } x ? x.ToString("F2", inv) : "–";
            ctx.Out.WriteLine($"{"prompt set",-26}{"prompts",9}{"words",9}{"NN",8}{"JJ/RB",8}{"IN",8}{"tokens",9}{"#DN",7}");
            foreach (var r in rows)
                ctx.Out.WriteLine($"{r.Name,-26}{r.Prompts,9}{F(r.Words),9}{F(r.Nouns),8}{F(r.AdjectivesAdverbs),8}{F(r.Prepositions),8}{F(r.ClipTokens),9}{(r.DistinctNouns?.ToString(inv) ?? "–"),7}");
            ctx.Out.WriteLine("words: whitespace split; NN, JJ/RB, IN: NLTK perceptron tags of word_tokenize(lower-cased prompt); tokens: CLIP ids incl. start/end, untruncated; #DN: distinct NN* tokens.");
        }
        if (plot != null)
        {
            BarChart(rows).SavePng(plot);
            ctx.Error.WriteLine($"chart: {plot}");
        }
        return EllaCli.ExitOk;
    }

    /// <summary>Grouped bars: one group per statistic (per-prompt averages), one colour per prompt set.</summary>
    static RgbImage BarChart(IReadOnlyList<PromptSetStatistics> sets)
    {
        var stats = new (string Label, Func<PromptSetStatistics, double?> Value)[]
        {
            ("WORDS", s => s.Words), ("NN", s => s.Nouns), ("JJ/RB", s => s.AdjectivesAdverbs), ("IN", s => s.Prepositions), ("TOKENS", s => s.ClipTokens),
        };
        (byte R, byte G, byte B)[] colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)];
        int groupW = 40 + 24 * sets.Count, width = Math.Max(60 + groupW * stats.Length, 560), height = 420, baseY = 340, top = 40;
        var img = new RgbImage(width, height);
        img.Fill(255, 255, 255);
        double max = stats.SelectMany(s => sets.Select(set => s.Value(set) ?? 0)).DefaultIfEmpty(1).Max();
        for (int g = 0; g < stats.Length; g++)
        {
            int x0 = 50 + g * groupW;
            for (int i = 0; i < sets.Count; i++)
            {
                double v = stats[g].Value(sets[i]) ?? 0;
                int h = (int)Math.Round((baseY - top) * v / max);
                var c = colors[i % colors.Length];
                var bar = new RgbImage(20, Math.Max(1, h));
                bar.Fill(c.R, c.G, c.B);
                img.Paste(bar, x0 + i * 24, baseY - Math.Max(1, h));
                BitmapFont.Draw(img, v.ToString("F0", CultureInfo.InvariantCulture), x0 + i * 24, baseY - h - 10);
            }
            BitmapFont.Draw(img, stats[g].Label, x0, baseY + 8);
        }
        var axis = new RgbImage(width - 40, 1);
        img.Paste(axis, 40, baseY);
        for (int i = 0; i < sets.Count; i++)
        {
            var c = colors[i % colors.Length];
            var swatch = new RgbImage(12, 8);
            swatch.Fill(c.R, c.G, c.B);
            img.Paste(swatch, 50, baseY + 30 + i * 12);
            BitmapFont.Draw(img, sets[i].Name, 68, baseY + 30 + i * 12);
        }
        BitmapFont.Draw(img, "PROMPT STATISTICS (AVERAGE PER PROMPT)", 50, 12, 2);
        return img;
    }
}
