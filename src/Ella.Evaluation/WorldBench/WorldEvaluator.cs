using System.Diagnostics;
using Ella.Evaluation.DpgBench;
using Ella.Evaluation.Judges;
using Ella.Hardware;
using Ella.Imaging;
using Ella.Pipelines;
using Ella.Schedulers;
using Ella.TextEncoders;
using Ella.World.Scenes;
using Ella.World.Splits;
using static TorchSharp.torch;

namespace Ella.Evaluation.WorldBench;

/// <summary>
/// The mini DPG-Bench of the shapes world (<c>ella world eval</c>). For each set (eval, paraphrase) it writes the bench
/// (<c>OUT/&lt;set&gt;/prompts</c>, <c>dpg_bench.csv</c>, <c>truth/</c>); for each row it generates the images of every
/// prompt into <c>OUT/&lt;set&gt;/&lt;row&gt;/&lt;id&gt;.png</c> (prompts whose image exists are skipped, so a run
/// resumes), then scores each folder with the shapes judge and the DPG scorer, exactly as
/// <c>ella dpg score --images OUT/&lt;set&gt;/&lt;row&gt; --csv OUT/&lt;set&gt;/dpg_bench.csv --resolution 64 --judge shapes
/// --pic-num IMAGES</c> does, and writes <c>results.json</c>, <c>table.md</c> and <c>grid.png</c>.
/// Seeds follow <c>ella dpg generate</c>: prompt k (its index in the split: shapes<i>k</i>, paraphrase<i>k</i>) uses seed
/// <c>Seed + k</c>, one generator drawing the noise of all its images at once; every row gets the same seeds.
/// Rows that share a connector (base, ella, ella+clip) share one loaded pipeline.
/// </summary>
public sealed class WorldEvaluator
{
    /// <summary>Pixels of one image: the world's canvas, what the judge reads.</summary>
    public const int Resolution = Vocabulary.CanvasSize;

    readonly WorldEvalOptions _o;
    readonly Action<string> _log;
    readonly IProgress<WorldEvalProgress>? _progress;

    public WorldEvaluator(WorldEvalOptions options, Action<string>? log = null, IProgress<WorldEvalProgress>? progress = null)
    {
        CheckSettings(options);
        if (options.Rows.Count == 0) throw new EllaException("--rows: no row to run");
        _o = options;
        _log = log ?? (_ => { });
        _progress = progress;
    }

    /// <summary>Checks the numbers and names of a run (not its rows) before anything is loaded.</summary>
    public static void CheckSettings(WorldEvalOptions o)
    {
        if (o.Sets.Count == 0) throw new EllaException("--sets: no set given (eval, paraphrase)");
        if (o.Sets.Contains(WorldSplit.Train)) throw new EllaException("--sets train: the training stream is not an evaluation set (eval, paraphrase)");
        if (o.Images is < 1 or > 4) throw new EllaException($"--images must be 1 to 4 (one image, or a 2×2 grid the judge reads crop by crop), got {o.Images}");
        if (o.Steps < 1) throw new EllaException($"--steps must be at least 1, got {o.Steps}");
        if (!double.IsFinite(o.Guidance) || o.Guidance < 0) throw new EllaException($"--guidance must be a finite number ≥ 0, got {o.Guidance}");
        if (!SchedulerFactory.IsKnown(o.Scheduler)) throw new EllaException($"--scheduler {o.Scheduler}: unknown (choose one of: {string.Join(", ", SchedulerFactory.Names)})");
        if (o.Limit is < 1) throw new EllaException($"--limit must be at least 1, got {o.Limit}");
        if (o.Seed < 0 || o.Seed > long.MaxValue - WorldSplits.EvalCount) throw new EllaException($"--seed must be 0 … {long.MaxValue - WorldSplits.EvalCount} (prompt k uses seed + k), got {o.Seed}");
        if (File.Exists(o.OutDir)) throw new EllaException($"--out {o.OutDir}: is a file; give a folder");
    }

    public static string SetName(WorldSplit set) => WorldSplits.Name(set);
    public string SetDir(WorldSplit set) => Path.Combine(_o.OutDir, SetName(set));
    public string RowDir(WorldSplit set, string row) => Path.Combine(SetDir(set), row);
    public string ImagePath(WorldSplit set, string row, WorldItem item) => Path.Combine(RowDir(set, row), item.Id + ".png");

    /// <summary>The prompts of a set this run evaluates: the first <see cref="WorldEvalOptions.Limit"/> of the split.</summary>
    public IReadOnlyList<WorldItem> Items(WorldSplit set)
    {
        int n = Math.Min(_o.Limit ?? int.MaxValue, WorldSplits.Size(set)!.Value);
        return Enumerable.Range(0, n).Select(i => WorldSplits.Item(set, i)).ToList();
    }

    /// <summary>Generates what is missing, scores every row of every set and writes the report files.</summary>
    public async Task<WorldEvalResults> RunAsync(CancellationToken cancellation = default)
    {
        Directory.CreateDirectory(_o.OutDir);
        var settings = WorldEvalSettings.From(_o);
        settings.WriteOrCheck(_o.OutDir);
        var items = _o.Sets.ToDictionary(s => s, Items);
        foreach (var set in _o.Sets) WorldFiles.WriteBench(SetDir(set), set, Resolution);
        Generate(items, cancellation);
        var rows = RowsToReport(items);
        var scores = await ScoreAsync(items, rows, cancellation).ConfigureAwait(false);
        var results = new WorldEvalResults
        {
            Settings = settings, Scoring = _o.Scoring, Limit = _o.Limit, Sets = _o.Sets.Select(SetName).ToList(),
            Rows = rows, Scores = scores, SkippedRows = _o.SkippedRows,
        };
        WriteReport(results);
        return results;
    }

    /// <summary>
    /// The rows this run asked for, plus every other row an earlier run left complete in this folder (all images of every
    /// set present; the settings were checked to be the same), in table order: so <c>--rows base</c>, then
    /// <c>--rows ella</c> into the same <c>--out</c>, report both.
    /// </summary>
    List<string> RowsToReport(Dictionary<WorldSplit, IReadOnlyList<WorldItem>> items)
    {
        var asked = _o.Rows.Select(r => r.Name).ToHashSet(StringComparer.Ordinal);
        var earlier = WorldEvalRows.Names.Where(name => !asked.Contains(name) && !_o.SkippedRows.ContainsKey(name)
            && _o.Sets.All(set => items[set].All(item => File.Exists(ImagePath(set, name, item))))).ToList();
        foreach (var name in earlier) _log($"{name}: reported from an earlier run into this folder (its images are all there)");
        return WorldEvalRows.Names.Where(n => asked.Contains(n) || earlier.Contains(n)).ToList();
    }

    /// <summary>Writes <c>results.json</c>, <c>table.md</c> and (when the eval set has base and ella) <c>grid.png</c>.</summary>
    public void WriteReport(WorldEvalResults results)
    {
        IO.AtomicFile.WriteAllText(Path.Combine(_o.OutDir, WorldEvalResults.JsonFile), results.ToJson());
        IO.AtomicFile.WriteAllText(Path.Combine(_o.OutDir, WorldEvalResults.TableFile), results.ToMarkdown());
        WriteGrid(results.Rows);
    }

    void Generate(Dictionary<WorldSplit, IReadOnlyList<WorldItem>> items, CancellationToken cancellation)
    {
        var todo = _o.Rows.ToDictionary(r => r.Name, r => _o.Sets.ToDictionary(s => s,
            s => items[s].Where(i => !File.Exists(ImagePath(s, r.Name, i))).ToList()));
        int total = todo.Values.Sum(bySet => bySet.Values.Sum(l => l.Count)), done = 0;
        foreach (var row in _o.Rows)
            foreach (var set in _o.Sets)
            {
                int n = items[set].Count, left = todo[row.Name][set].Count;
                _log($"{SetName(set)}/{row.Name}: {n} prompts, {n - left} already done, {left} to generate");
            }
        if (total == 0) return;

        // base shares the pipeline of ella / ella+clip (one UNet, CLIP and the connector loaded once).
        string? shared = _o.Rows.FirstOrDefault(r => r.Name is WorldEvalRows.Ella or WorldEvalRows.EllaClip)?.Connector;
        var clock = Stopwatch.StartNew();
        foreach (var group in _o.Rows.GroupBy(r => r.Connector ?? shared))
        {
            if (group.All(r => todo[r.Name].Values.All(l => l.Count == 0))) continue;
            using var pipeline = EllaPipeline.Load(LoadOptions(group.Key, group.ToList()), _log);
            foreach (var row in group)
                foreach (var set in _o.Sets)
                {
                    var list = todo[row.Name][set];
                    if (list.Count == 0) continue;
                    Directory.CreateDirectory(RowDir(set, row.Name));
                    var warned = new List<string>();
                    for (int k = 0; k < list.Count; k++)
                    {
                        var warnings = GenerateOne(pipeline, row, set, list[k], cancellation);
                        if (warnings.Count > 0) warned.Add($"{list[k].Id}: {warnings[0]}");
                        _progress?.Report(new WorldEvalProgress(SetName(set), row.Name, list[k].Id, k + 1, list.Count, ++done, total, clock.Elapsed));
                    }
                    if (warned.Count > 0) _log($"note: {SetName(set)}/{row.Name}: {warned.Count} of {list.Count} prompts gave warnings, e.g. {warned[0]}");
                }
        }
    }

    PipelineLoadOptions LoadOptions(string? connector, IReadOnlyList<WorldEvalRow> rows)
    {
        var encoder = rows.FirstOrDefault(r => r.Connector != null)?.TextEncoder ?? TextEncoderKind.T5;
        string? t5 = null;
        if (connector != null && encoder == TextEncoderKind.T5)
            t5 = Environment.GetEnvironmentVariable("ELLA_T5") is { Length: > 0 } path ? ModelLocator.Resolve(path, "ELLA_T5")
                : throw new EllaException($"{connector} reads FLAN-T5 features: set ELLA_T5 to the FLAN-T5 folder");
        return new PipelineLoadOptions
        {
            StableDiffusion = _o.Model, Ella = connector, TextEncoder = encoder, T5 = t5,
            LoadClip = rows.Any(r => GenerationModes.UsesClip(r.Mode)), DType = _o.DType,
        };
    }

    IReadOnlyList<string> GenerateOne(EllaPipeline pipeline, WorldEvalRow row, WorldSplit set, WorldItem item, CancellationToken cancellation)
    {
        var request = new GenerationRequest
        {
            Prompts = [item.DenseCaption], Mode = row.Mode, Scheduler = _o.Scheduler, Steps = _o.Steps, GuidanceScale = _o.Guidance,
            Seed = _o.Seed + item.Index, Width = Resolution, Height = Resolution, BatchSize = _o.Images,
        };
        using var scope = NewDisposeScope();
        using var result = pipeline.Generate(request, cancellation: cancellation);
        var cells = Enumerable.Range(0, _o.Images).Select(i => RgbImage.FromTensor(result.Images[i])).ToList();
        var image = _o.Images == 1 ? cells[0] : ImageGrid.Make(Pad(cells), 2);
        string parameters = GenerationParameters.Text(pipeline, request, result, item.DenseCaption, 0, DTypeChoice.Name(_o.DType))
                            + (_o.Images > 1 ? ", Grid: 2x2" : "") + $", World eval: {SetName(set)}/{row.Name}";
        image.SavePng(ImagePath(set, row.Name, item), new Dictionary<string, string> { ["parameters"] = parameters });
        return result.Warnings;
    }

    /// <summary>Four cells for the 2×2 grid; the unused ones white (the judge is asked about the first <see cref="WorldEvalOptions.Images"/> only).</summary>
    static List<RgbImage> Pad(List<RgbImage> cells)
    {
        var padded = new List<RgbImage>(cells);
        while (padded.Count < 4)
        {
            var blank = new RgbImage(Resolution, Resolution);
            blank.Fill(255, 255, 255);
            padded.Add(blank);
        }
        return padded;
    }

    async Task<List<WorldEvalScore>> ScoreAsync(Dictionary<WorldSplit, IReadOnlyList<WorldItem>> items, IReadOnlyList<string> rowNames, CancellationToken cancellation)
    {
        var scores = new List<WorldEvalScore>();
        foreach (var set in _o.Sets)
        {
            string csv = Path.Combine(SetDir(set), WorldFiles.CsvFile);
            var rows = DpgBenchCsv.Load(csv);
            await using var judge = new ShapesJudge(rows, csv);
            var ids = items[set].Select(i => i.Id).ToHashSet(StringComparer.Ordinal);
            foreach (var row in rowNames)
            {
                string dir = RowDir(set, row);
                var options = new DpgScoreOptions { ImagesDir = dir, Resolution = Resolution, PicNum = _o.Images, Scoring = _o.Scoring, Items = ids };
                var result = await DpgScorer.ScoreAsync(rows, options, judge, null, cancellation).ConfigureAwait(false);
                DpgResultFiles.Write(dir, result);
                scores.Add(new WorldEvalScore(SetName(set), row, ids.Count, result));
            }
        }
        return scores;
    }

    void WriteGrid(IReadOnlyList<string> rows)
    {
        string path = Path.Combine(_o.OutDir, WorldEvalGrid.FileName);
        bool hasRows = rows.Contains(WorldEvalRows.Base) && rows.Contains(WorldEvalRows.Ella);
        if (!_o.Sets.Contains(WorldSplit.Eval) || !hasRows)
        {
            _log($"note: no {WorldEvalGrid.FileName}: it shows the eval set's base and ella rows, and this run has not both");
            return;
        }
        var entries = Items(WorldSplit.Eval).Take(_o.GridPrompts).Select(item => new WorldEvalGridEntry(item.Id, item.DenseCaption,
            FirstImage(ImagePath(WorldSplit.Eval, WorldEvalRows.Base, item)), FirstImage(ImagePath(WorldSplit.Eval, WorldEvalRows.Ella, item)))).ToList();
        WorldEvalGrid.Make(entries, WorldEvalRows.Base, WorldEvalRows.Ella).SavePng(path);
    }

    static RgbImage FirstImage(string path) => RgbImage.Load(path).Crop(0, 0, Resolution, Resolution);
}
