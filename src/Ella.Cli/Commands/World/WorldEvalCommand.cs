using System.CommandLine;
using Ella.Evaluation.DpgBench;
using Ella.Evaluation.WorldBench;
using Ella.Hardware;
using Ella.Schedulers;
using Ella.World.Splits;

namespace Ella.Cli.Commands.World;

/// <summary>
/// <c>ella world eval --model DIR --out OUT [--sets eval,paraphrase] [--rows …] [--images 4] [--steps 20] …</c>: the
/// mini DPG-Bench of the shapes world, every row (base CLIP, ELLA, ELLA+CLIP, the ablations) on the eval and
/// paraphrase sets, judged by the scene parser (<see cref="WorldEvaluator"/>).
/// </summary>
public static class WorldEvalCommand
{
    public const string ModelEnvironment = "ELLA_WORLD_MODEL";

    public static Command Create(CliContext ctx)
    {
        var model = new Option<string?>("--model") { Description = $"The shapes-world model folder (diffusers layout + ella/ + ablations/; env {ModelEnvironment})" };
        var output = new Option<string>("--out") { Description = "Folder for <set>/<row>/<id>.png, results.json, table.md and grid.png (a run resumes into it)", Required = true };
        var sets = new Option<string>("--sets") { Description = "Comma-separated: eval (200 dense prompts), paraphrase (100 prompts in unseen words)", DefaultValueFactory = _ => "eval,paraphrase" };
        var rows = new Option<string?>("--rows") { Description = $"Comma-separated rows (default: all; rows whose files are missing are skipped): {string.Join(", ", WorldEvalRows.Names)}" };
        var images = new Option<int>("--images") { Description = "Images per prompt, 1 to 4 (more than one: a 2×2 grid, each image judged)", DefaultValueFactory = _ => 4 };
        var steps = new Option<int>("--steps") { Description = "Denoising steps", DefaultValueFactory = _ => 20 };
        var guidance = new Option<double>("--guidance") { Description = "Classifier-free guidance scale", DefaultValueFactory = _ => 7.5 };
        var scheduler = new Option<string>("--scheduler") { Description = string.Join(" | ", SchedulerFactory.Names), DefaultValueFactory = _ => "dpm++2m" };
        var seed = new Option<long>("--seed") { Description = "Prompt k of a set uses seed + k for all its images (as 'ella dpg generate')", DefaultValueFactory = _ => 0 };
        var limit = new Option<int?>("--limit") { Description = "Only the first N prompts of each set (quick runs)" };
        var dtype = new Option<string>("--dtype") { Description = "auto (bf16 with native bf16, else fp32) | fp32 | bf16", DefaultValueFactory = _ => "auto" };
        var scoring = new Option<string>("--scoring") { Description = "official (as compute_dpg_bench.py, the default of 'ella dpg score') | corrected", DefaultValueFactory = _ => "official" };
        var threads = new Option<int?>("--threads") { Description = "Intra-op threads (default: one per physical core)" };
        var json = new Option<bool>("--json") { Description = "Print results.json instead of the table" };
        var command = new Command("eval", "Evaluate the shapes world: every row on the eval and paraphrase sets, scored by the shapes judge (mini DPG-Bench)")
            { model, output, sets, rows, images, steps, guidance, scheduler, seed, limit, dtype, scoring, threads, json };
        command.SetAction(async (p, _) =>
        {
            if (p.GetValue(threads) is { } t && (t < 1 || t > 1024)) throw new EllaException($"--threads must be between 1 and 1024, got {t}");
            string dtypeName = p.GetValue(dtype)!;
            if (dtypeName is not ("auto" or "fp32" or "bf16")) throw new EllaException($"--dtype {dtypeName}: expected auto, fp32 or bf16");
            string scoringName = p.GetValue(scoring)!;
            if (scoringName is not ("official" or "corrected")) throw new EllaException($"--scoring {scoringName}: expected official or corrected");
            var options = new WorldEvalOptions
            {
                Model = "", OutDir = p.GetValue(output)!, Rows = [], Sets = ParseSets(p.GetValue(sets)!), Images = p.GetValue(images),
                Steps = p.GetValue(steps), Guidance = p.GetValue(guidance), Scheduler = p.GetValue(scheduler)!, Seed = p.GetValue(seed),
                Limit = p.GetValue(limit), Scoring = scoringName == "corrected" ? DpgScoring.Corrected : DpgScoring.Official,
            };
            var rowNames = ParseRows(p.GetValue(rows));
            WorldEvaluator.CheckSettings(options);
            string modelDir = ResolveModel(p.GetValue(model));
            var (resolved, skipped) = WorldEvalRows.Resolve(modelDir, rowNames);
            foreach (var (row, why) in skipped) ctx.Error.WriteLine($"note: row {row} skipped: {why}");
            Native.TorchRuntime.Initialize(p.GetValue(threads));
            var resolvedDType = DTypeChoice.Resolve(dtypeName);
            if (resolvedDType.Warning != null) ctx.Error.WriteLine($"warning: {resolvedDType.Warning}");
            options = options with { Model = modelDir, Rows = resolved, SkippedRows = skipped, DType = resolvedDType.DType };
            var evaluator = new WorldEvaluator(options, m => ctx.Error.WriteLine(m), new ProgressLines(ctx.Error, StepProgressReporter.IsInteractive(ctx.Error)));
            var results = await evaluator.RunAsync(ctx.Interrupt);
            ctx.Error.WriteLine($"wrote {Path.Combine(options.OutDir, WorldEvalResults.JsonFile)} and {WorldEvalResults.TableFile}; images under {options.OutDir}/<set>/<row>/");
            ctx.Out.Write(p.GetValue(json) ? results.ToJson() + "\n" : results.ToMarkdown());
            return EllaCli.ExitOk;
        });
        return command;
    }

    /// <summary>The world model folder: <c>--model</c>, else <c>ELLA_WORLD_MODEL</c>. (The one place to plug in the
    /// shapes-world locator.)</summary>
    public static string ResolveModel(string? option)
    {
        if (option != null)
        {
            if (!Directory.Exists(option)) throw new EllaException($"--model {option}: no such folder (expected a shapes-world model: unet/, vae/, text_encoder/, tokenizer/, scheduler/, ella/, ablations/)");
            return option;
        }
        try { return Ella.Pipelines.WorldDefaultModel.Locate().Folder; }
        catch (EllaException e) { throw new EllaException($"pass --model DIR: {e.Message}", e); }
    }

    static List<WorldSplit> ParseSets(string value)
    {
        var sets = new List<WorldSplit>();
        foreach (var name in Split(value))
        {
            var set = name switch
            {
                "eval" => WorldSplit.Eval,
                "paraphrase" => WorldSplit.Paraphrase,
                _ => throw new EllaException($"--sets {name}: unknown set (eval, paraphrase)"),
            };
            if (!sets.Contains(set)) sets.Add(set);
        }
        if (sets.Count == 0) throw new EllaException("--sets: no set given (eval, paraphrase)");
        return sets;
    }

    static List<string>? ParseRows(string? value)
    {
        if (value == null) return null;
        var names = Split(value).Distinct().ToList();
        foreach (var n in names)
            if (!WorldEvalRows.Names.Contains(n)) throw new EllaException($"--rows {n}: unknown row (choose from: {string.Join(", ", WorldEvalRows.Names)})");
        if (names.Count == 0) throw new EllaException($"--rows: no row given (choose from: {string.Join(", ", WorldEvalRows.Names)})");
        return names;
    }

    static IEnumerable<string> Split(string value) => value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s => s.ToLowerInvariant());

    /// <summary>One line per generated prompt with the run's ETA (rewritten in place on a terminal). Synchronous:
    /// Progress&lt;T&gt; would post to the thread pool.</summary>
    sealed class ProgressLines(TextWriter writer, bool interactive) : IProgress<WorldEvalProgress>
    {
        public void Report(WorldEvalProgress p)
        {
            string line = $"[{p.Set}/{p.Row} {p.RowDone}/{p.RowTotal} | {p.Done}/{p.Total}] {p.ItemId}.png  {p.SecondsPerPrompt:F1} s/prompt  ETA {p.Eta:hh\\:mm\\:ss}";
            if (!interactive) writer.WriteLine(line);
            else
            {
                writer.Write($"\r{line}   ");
                if (p.Done == p.Total) writer.WriteLine();
            }
        }
    }
}
