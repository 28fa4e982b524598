using System.CommandLine;
using System.Diagnostics;
using Ella.Evaluation.DpgBench;
using Ella.Imaging;
using Ella.Pipelines;

namespace Ella.Cli.Commands.Dpg;

/// <summary>
/// <c>ella dpg generate</c>: one grid per prompt (2×2 for the default 4 images), named as the prompt file, resumable
/// and shardable. Seed schedule: prompt k (0-based, in sorted file-name order over the whole folder) uses seed
/// <c>--seed + k</c>, and its images come from one generator drawing the [N,4,h,w] noise at once, as diffusers does.
/// </summary>
public static class DpgGenerateCommand
{
    public static Command Create(CliContext ctx)
    {
        var o = new PipelineCliOptions();
        var prompts = new Option<string>("--prompts") { Description = "Folder of <item_id>.txt prompts (DPG-Bench's prompts/)", Required = true };
        var output = new Option<string>("--out") { Description = "Folder for <item_id>.png grids", Required = true };
        var perPrompt = new Option<int>("--images-per-prompt") { Description = "Images per prompt (4 → a 2×2 grid, as DPG-Bench scores)", DefaultValueFactory = _ => 4 };
        var shard = new Option<string?>("--shard") { Description = "I/N: take every N-th prompt from offset I (default from JOB_COMPLETION_INDEX or SLURM_ARRAY_TASK_ID, with N from ELLA_SHARD_COUNT or SLURM_ARRAY_TASK_COUNT)" };
        var negative = new Option<string>("--negative-prompt") { Description = "Negative prompt for every image", DefaultValueFactory = _ => "" };
        var command = new Command("generate", "Generate the DPG-Bench images: one grid per prompt, resumable, shardable") { prompts, output, perPrompt, shard, negative };
        o.AddTo(command);
        o.Seed.DefaultValueFactory = _ => 0;
        command.SetAction(p => Run(ctx, o, p, p.GetValue(prompts)!, p.GetValue(output)!, p.GetValue(perPrompt), p.GetValue(shard), p.GetValue(negative)!));
        return command;
    }

    /// <summary>The shard (I, N) from --shard or the batch system's environment; (0, 1) when neither is set.</summary>
    public static (int Index, int Count) ResolveShard(string? option, Func<string, string?> env)
    {
        if (option != null)
        {
            var parts = option.Split('/');
            if (parts.Length != 2 || !int.TryParse(parts[0], out int i) || !int.TryParse(parts[1], out int n) || n < 1 || i < 0 || i >= n)
                throw new EllaException($"--shard {option}: expected I/N with 0 ≤ I < N, e.g. 0/8");
            return (i, n);
        }
        string? index = env("JOB_COMPLETION_INDEX");
        if (index == null && env("SLURM_ARRAY_TASK_ID") is { } slurm)
            index = int.TryParse(slurm, out int task) && int.TryParse(env("SLURM_ARRAY_TASK_MIN") ?? "0", out int min)
                ? (task - min).ToString()
                : throw new EllaException($"SLURM_ARRAY_TASK_ID '{slurm}' (or SLURM_ARRAY_TASK_MIN) is not a whole number");
        if (index == null) return (0, 1);
        string? count = env("ELLA_SHARD_COUNT") ?? env("SLURM_ARRAY_TASK_COUNT");
        if (count == null || !int.TryParse(count, out int total) || !int.TryParse(index, out int idx) || idx < 0 || idx >= total)
            throw new EllaException($"shard index {index} is set by the batch system, but the shard count is not: pass --shard {index}/N or set ELLA_SHARD_COUNT");
        return (idx, total);
    }

    static int Run(CliContext ctx, PipelineCliOptions o, ParseResult p, string promptDir, string outDir, int perPrompt, string? shardOption, string negative)
    {
        if (perPrompt < 1 || perPrompt > 4096) throw new EllaException($"--images-per-prompt must be between 1 and 4096, got {perPrompt}");
        if (File.Exists(outDir)) throw new EllaException($"--out {outDir}: is a file; give a folder for the grids");
        var all = DpgBenchCsv.LoadPrompts(promptDir).ToList();
        var (index, count) = ResolveShard(shardOption, Environment.GetEnvironmentVariable);
        long baseSeed = Robustness.Seeds.Given(p.GetValue(o.Seed)) ?? Robustness.Seeds.Random();
        if (Robustness.Seeds.Given(p.GetValue(o.Seed)) == null) ctx.Error.WriteLine($"base seed {Robustness.Seeds.Format(baseSeed)} (random); pass --seed {Robustness.Seeds.Format(baseSeed)} to resume with the same seeds");
        var mine = all.Select((kv, k) => (Id: kv.Key, Text: kv.Value, K: k)).Where(x => x.K % count == index).ToList();
        Directory.CreateDirectory(outDir);
        var todo = mine.Where(x => !File.Exists(Path.Combine(outDir, x.Id + ".png"))).ToList();
        ctx.Error.WriteLine($"shard {index}/{count}: {mine.Count} prompts, {mine.Count - todo.Count} already done, {todo.Count} to generate");
        if (todo.Count == 0) return EllaCli.ExitOk;

        var mode = GenerationModes.Parse(p.GetValue(o.Mode)!);
        using var pipeline = EllaPipeline.Load(o.LoadOptions(p, [mode]), m => ctx.Error.WriteLine(m));
        int columns = (int)Math.Ceiling(Math.Sqrt(perPrompt));
        var clock = Stopwatch.StartNew();
        bool interactive = StepProgressReporter.IsInteractive(ctx.Error);
        for (int n = 0; n < todo.Count; n++)
        {
            var (id, text, k) = todo[n];
            var request = o.Request(p, [text.Trim()], negative) with { BatchSize = perPrompt, Seed = baseSeed + k };
            pipeline.Validate(request);
            // Ctrl-C stops between steps; the grids already written stay, and the next run resumes after them.
            using var result = pipeline.Generate(request, cancellation: ctx.Interrupt);
            foreach (var w in result.Warnings) ctx.Error.WriteLine($"warning ({id}): {w}");
            var cells = Enumerable.Range(0, perPrompt).Select(i => RgbImage.FromTensor(result.Images[i])).ToList();
            var grid = perPrompt == 1 ? cells[0] : ImageGrid.Make(cells, columns);
            grid.SavePng(Path.Combine(outDir, id + ".png"), new Dictionary<string, string>
            {
                ["parameters"] = PipelineCliOptions.Parameters(pipeline, request, result, request.Prompts[0], 0, p.GetValue(o.DType)!) + $", Grid: {columns}x{(perPrompt + columns - 1) / columns}",
            });
            double perItem = clock.Elapsed.TotalSeconds / (n + 1);
            string line = $"[{n + 1}/{todo.Count}] {id}.png  {perItem:F1} s/prompt  ETA {TimeSpan.FromSeconds(perItem * (todo.Count - n - 1)):hh\\:mm\\:ss}";
            if (interactive) ctx.Error.Write($"\r{line}   "); else ctx.Error.WriteLine(line);
        }
        if (interactive) ctx.Error.WriteLine();
        ctx.Out.WriteLine(outDir);
        return EllaCli.ExitOk;
    }
}
