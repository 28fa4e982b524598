using Ella.Evaluation.Judges;
using Ella.Imaging;

namespace Ella.Evaluation.DpgBench;

/// <summary><c>official</c> reproduces compute_dpg_bench.py with its two defects; <c>corrected</c> fixes both.</summary>
public enum DpgScoring { Official, Corrected }

public sealed record DpgScoreOptions
{
    public required string ImagesDir { get; init; }
    public required int Resolution { get; init; }
    public int PicNum { get; init; } = 4;
    public DpgScoring Scoring { get; init; } = DpgScoring.Official;
    /// <summary>Only images of these item ids are scored (null: every image in the folder); others are ignored, not reported as skipped.</summary>
    public IReadOnlySet<string>? Items { get; init; }
}

/// <summary>One asked question, for the detail log.</summary>
public sealed record DpgDetail(string Image, int Crop, string ItemId, int PropositionId, string Question, string Answer);

/// <summary>Scores of a run; all scores are fractions in [0, 1] (×100 when printed).</summary>
public sealed class DpgResult
{
    public double Score { get; init; }
    public required SortedDictionary<string, double> L1 { get; init; }
    public required SortedDictionary<string, double> L2 { get; init; }
    /// <summary>Item id → mean over crops of the crop scores.</summary>
    public required SortedDictionary<string, double> Items { get; init; }
    /// <summary>Item id → score of each crop.</summary>
    public required SortedDictionary<string, double[]> CropScores { get; init; }
    /// <summary>Image file → why it was not scored.</summary>
    public required SortedDictionary<string, string> Skipped { get; init; }
    public required List<DpgDetail> Details { get; init; }
}

/// <summary>
/// DPG-Bench scoring. Per crop, each question scores 1 if the answer is exactly "yes"; then, in CSV order, a question
/// with a parent (dependency ≠ 0) that failed is zeroed. Official: "failed" reads the scores being zeroed in that same
/// pass, so a zero cascades to later children, exactly as the authors' in-place loop does; corrected: a parent fails
/// when its own answer is no. The crop score is the mean over the item's questions, the item score the mean over
/// crops, the DPG-Bench score the mean over scored items. Category scores pool question scores over items:
/// official = RAW scores of the LAST crop; corrected = dependency-adjusted scores of every crop.
/// </summary>
public static class DpgScorer
{
    /// <summary>Crop rectangles (x, y) in the official order: top-left, top-right, bottom-left, bottom-right.</summary>
    public static (int X, int Y)[] CropOrigins(int resolution) =>
        [(0, 0), (resolution, 0), (0, resolution), (resolution, resolution)];

    public static async Task<DpgResult> ScoreAsync(IReadOnlyList<DpgRow> rows, DpgScoreOptions options, IVqaJudge judge,
        IProgress<int>? progress = null, CancellationToken cancellation = default)
    {
        if (options.PicNum is < 1 or > 4) throw new EllaException($"--pic-num must be 1 to 4, got {options.PicNum}");
        if (options.Resolution < 1) throw new EllaException($"--resolution must be positive, got {options.Resolution}");
        if (!Directory.Exists(options.ImagesDir)) throw new EllaException($"{options.ImagesDir}: images folder not found");
        bool official = options.Scoring == DpgScoring.Official;
        var items = DpgBenchCsv.Group(rows, official);
        var skipped = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var toScore = new List<(string File, DpgItem Item)>();
        var origins = CropOrigins(options.Resolution).Take(options.PicNum).ToArray();

        foreach (var file in Directory.GetFiles(options.ImagesDir).Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(file);
            string ext = Path.GetExtension(name).ToLowerInvariant();
            if (ext is not (".png" or ".jpg" or ".jpeg")) continue; // our own logs and CSVs live here too
            string key = name.Split('.')[0]; // the official key: text before the first dot
            if (options.Items != null && !options.Items.Contains(key)) continue;
            if (!items.TryGetValue(key, out var item)) { skipped[name] = $"item '{key}' is not in the benchmark CSV"; continue; }
            toScore.Add((file, item));
        }

        // Check every image's size before asking anything, so a wrong --resolution fails fast.
        var images = new Dictionary<string, Lazy<RgbImage>>();
        foreach (var (file, _) in toScore)
        {
            var (w, h) = ImageSize(file);
            bool ok = (w == 2 * options.Resolution && h == 2 * options.Resolution) || (options.PicNum == 1 && w == options.Resolution && h == options.Resolution);
            if (!ok)
                throw new EllaException($"{file}: image is {w}×{h}, expected a 2×2 grid of {options.Resolution}-pixel cells ({2 * options.Resolution}×{2 * options.Resolution}); check --resolution");
            images[file] = new Lazy<RgbImage>(() => RgbImage.Load(file));
        }

        var questions = new List<VqaQuestion>();
        foreach (var (file, item) in toScore)
            for (int c = 0; c < origins.Length; c++)
            {
                var (x, y) = origins[c];
                var img = images[file];
                foreach (var p in item.Propositions)
                    questions.Add(new VqaQuestion(item.ItemId, c, p.PropositionId, p.Question, () => img.Value.Crop(x, y, options.Resolution, options.Resolution)));
            }
        var answers = await judge.AnswerAllAsync(questions, progress, cancellation).ConfigureAwait(false);

        var itemScores = new SortedDictionary<string, double>(StringComparer.Ordinal);
        var cropScores = new SortedDictionary<string, double[]>(StringComparer.Ordinal);
        var categoryL2 = new Dictionary<string, List<double>>();
        var details = new List<DpgDetail>();
        var missingAnswers = new List<string>();
        foreach (var (file, item) in toScore)
        {
            var scores = new Dictionary<int, double>();
            Dictionary<int, double> raw = new();
            var perCrop = new double[origins.Length];
            var itemCategories = new List<(string, double)>();
            string? failure = null;
            for (int c = 0; c < origins.Length && failure == null; c++)
            {
                foreach (var p in item.Propositions)
                {
                    if (!answers.TryGetValue((item.ItemId, c, p.PropositionId), out var a))
                    {
                        missingAnswers.Add($"{item.ItemId}/crop {c}/proposition {p.PropositionId}");
                        continue;
                    }
                    scores[p.PropositionId] = a.IsYes ? 1.0 : 0.0;
                    details.Add(new DpgDetail(Path.GetFileName(file), c, item.ItemId, p.PropositionId, p.Question, a.Raw));
                }
                raw = new Dictionary<int, double>(scores);
                foreach (var p in item.Propositions)
                {
                    foreach (int parent in p.Dependencies)
                    {
                        if (parent == 0) continue;
                        if (!scores.TryGetValue(parent, out double ps))
                        {
                            // The official script raises KeyError here and leaves the whole item out ("Failed filename").
                            failure = official
                                ? $"proposition {p.PropositionId} depends on proposition {parent}, which the official script drops (it skips the CSV's first data row)"
                                : $"proposition {p.PropositionId} depends on missing proposition {parent}";
                            break;
                        }
                        // Official: parents are read from the scores being zeroed in this very pass (so zeros cascade
                        // in CSV order). Corrected: a parent fails when its own answer is no.
                        if ((official ? ps : raw[parent]) == 0) { scores[p.PropositionId] = 0; break; }
                    }
                    if (failure != null) break;
                }
                if (failure != null || scores.Count == 0) break;
                perCrop[c] = scores.Values.Sum() / scores.Count;
                if (!official)
                    foreach (var p in item.Propositions) itemCategories.Add((p.L2, scores[p.PropositionId]));
            }
            if (failure != null) { skipped[Path.GetFileName(file)] = failure; continue; }
            if (official)
                foreach (var p in item.Propositions) itemCategories.Add((p.L2, raw[p.PropositionId]));
            foreach (var (cat, v) in itemCategories) Add(categoryL2, cat, v);
            cropScores[item.ItemId] = perCrop;
            itemScores[item.ItemId] = perCrop.Sum() / perCrop.Length;
        }
        if (missingAnswers.Count > 0)
            throw new EllaException($"the judge ({judge.Name}) has no answer for {missingAnswers.Count} question(s), e.g. {string.Join("; ", missingAnswers.Take(5))}");

        var l2 = new SortedDictionary<string, double>(StringComparer.Ordinal);
        var l1Pool = new Dictionary<string, List<double>>();
        foreach (var (cat, values) in categoryL2)
        {
            l2[cat] = values.Average();
            Add(l1Pool, cat.Split('-')[0].Trim(), values);
        }
        var l1 = new SortedDictionary<string, double>(l1Pool.ToDictionary(kv => kv.Key, kv => kv.Value.Average()), StringComparer.Ordinal);
        return new DpgResult
        {
            Score = itemScores.Count > 0 ? itemScores.Values.Average() : double.NaN,
            L1 = l1, L2 = l2, Items = itemScores, CropScores = cropScores, Skipped = skipped, Details = details,
        };
    }

    static void Add(Dictionary<string, List<double>> pool, string key, double value)
    {
        if (!pool.TryGetValue(key, out var list)) pool[key] = list = new List<double>();
        list.Add(value);
    }

    static void Add(Dictionary<string, List<double>> pool, string key, List<double> values)
    {
        if (!pool.TryGetValue(key, out var list)) pool[key] = list = new List<double>();
        list.AddRange(values);
    }

    static (int W, int H) ImageSize(string file)
    {
        using var codec = SkiaSharp.SKCodec.Create(file) ?? throw new EllaException($"{file}: not a readable PNG or JPEG image");
        return (codec.Info.Width, codec.Info.Height);
    }
}
