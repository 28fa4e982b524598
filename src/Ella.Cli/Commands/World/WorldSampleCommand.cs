using System.CommandLine;
using System.Diagnostics;
using Ella.World.Splits;

namespace Ella.Cli.Commands.World;

/// <summary><c>ella world sample --count N --out DIR [--seed S] [--split train|eval|paraphrase] [--start K] [--masks]</c>.</summary>
public static class WorldSampleCommand
{
    public static Command Create(CliContext ctx)
    {
        var count = new Option<int>("--count") { Description = "Number of images", Required = true };
        var output = new Option<string>("--out") { Description = "Folder for <id>.png and metadata.jsonl (file_name, text = dense caption, short_text, split, index, scene)", Required = true };
        var seed = new Option<long?>("--seed") { Description = "Training stream (train split only; default 0). eval and paraphrase are fixed sets" };
        var split = new Option<string>("--split") { Description = "train (endless stream) | eval (200 fixed scenes) | paraphrase (100 fixed scenes, unseen words)", DefaultValueFactory = _ => "train" };
        split.AcceptOnlyFromAmong("train", "eval", "paraphrase");
        var start = new Option<long>("--start") { Description = "Index of the first item (to continue a stream)", DefaultValueFactory = _ => 0 };
        var masks = new Option<bool>("--masks") { Description = "Also write each image's foreground mask (objects white on black) as masks/<id>.png, named by \"mask\" in metadata.jsonl (for 'ella train --foreground-weight')" };
        var command = new Command("sample", "Write world images with their dense and short captions (an imagefolder for 'ella train')") { count, output, seed, split, start, masks };
        command.SetAction(p =>
        {
            var which = WorldSplits.Parse(p.GetValue(split)!);
            long? s = p.GetValue(seed);
            if (s != null && which != WorldSplit.Train)
                throw new EllaException($"--seed applies to --split train only; the {WorldSplits.Name(which)} set is fixed");
            string outDir = p.GetValue(output)!;
            var clock = Stopwatch.StartNew();
            int total = p.GetValue(count);
            int n = WorldFiles.WriteSample(outDir, WorldFiles.Items(which, p.GetValue(start), total, s ?? 0), progress: new SyncProgress(ctx.Error, total), masks: p.GetValue(masks));
            ctx.Error.WriteLine($"wrote {n} images and {WorldFiles.MetadataFile} to {outDir} in {clock.Elapsed.TotalSeconds:F1} s");
            ctx.Out.WriteLine(outDir);
            return EllaCli.ExitOk;
        });
        return command;
    }

    /// <summary>A line every 1,000 images (synchronous: Progress&lt;T&gt; would post to the thread pool).</summary>
    sealed class SyncProgress(TextWriter writer, int total) : IProgress<int>
    {
        public void Report(int done) { if (done % 1000 == 0 && done < total) writer.WriteLine($"{done}/{total} images"); }
    }
}
