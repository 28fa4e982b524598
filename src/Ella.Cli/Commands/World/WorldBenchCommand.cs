using System.CommandLine;
using Ella.World.Splits;

namespace Ella.Cli.Commands.World;

/// <summary><c>ella world bench --out DIR [--split eval|paraphrase]</c>: the mini DPG-Bench of a fixed split.</summary>
public static class WorldBenchCommand
{
    public static Command Create(CliContext ctx)
    {
        var output = new Option<string>("--out") { Description = "Folder for prompts/, dpg_bench.csv and truth/ (ground-truth renders as 2×2 grids of 64-px cells)", Required = true };
        var split = new Option<string>("--split") { Description = "eval (200 dense prompts) | paraphrase (100 prompts in words never seen in training)", DefaultValueFactory = _ => "eval" };
        split.AcceptOnlyFromAmong("eval", "paraphrase");
        var command = new Command("bench", "Write a DPG-Bench folder (prompts + question CSV) for the eval or paraphrase split") { output, split };
        command.SetAction(p =>
        {
            string outDir = p.GetValue(output)!;
            int n = WorldFiles.WriteBench(outDir, WorldSplits.Parse(p.GetValue(split)!));
            ctx.Error.WriteLine($"wrote {n} prompts, {WorldFiles.CsvFile} and ground-truth grids to {outDir}");
            ctx.Error.WriteLine($"score images with: ella dpg score --images IMAGES --csv {Path.Combine(outDir, WorldFiles.CsvFile)} --resolution 64 --judge shapes");
            ctx.Out.WriteLine(outDir);
            return EllaCli.ExitOk;
        });
        return command;
    }
}
