using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ella.Evaluation.DpgBench;

namespace Ella.Evaluation.WorldBench;

/// <summary>
/// A finished run: <c>results.json</c> (per set and row: the DPG-Bench score, L1 and L2 category scores, ×100) and
/// <c>table.md</c> (rows × overall and L1 columns of each set).
/// </summary>
public sealed class WorldEvalResults
{
    public const string JsonFile = "results.json";
    public const string TableFile = "table.md";

    public required WorldEvalSettings Settings { get; init; }
    public required DpgScoring Scoring { get; init; }
    public int? Limit { get; init; }
    public required IReadOnlyList<string> Sets { get; init; }
    public required IReadOnlyList<string> Rows { get; init; }
    public required IReadOnlyList<WorldEvalScore> Scores { get; init; }
    /// <summary>Row → why it was left out (its connector file is missing).</summary>
    public required IReadOnlyDictionary<string, string> SkippedRows { get; init; }

    public WorldEvalScore? Find(string set, string row) => Scores.FirstOrDefault(s => s.Set == set && s.Row == row);

    /// <summary>The L1 categories of a set, over every row, sorted.</summary>
    public List<string> Categories(string set) =>
        Scores.Where(s => s.Set == set).SelectMany(s => s.Result.L1.Keys).Distinct().Order(StringComparer.Ordinal).ToList();

    static JsonNode? Pct(double v) => double.IsFinite(v) ? JsonValue.Create(v * 100) : null;

    static JsonObject Table(IEnumerable<KeyValuePair<string, double>> scores)
    {
        var o = new JsonObject();
        foreach (var (k, v) in scores) o[k] = Pct(v);
        return o;
    }

    public string ToJson()
    {
        var settings = JsonNode.Parse(Settings.ToJson())!.AsObject();
        settings["scoring"] = Scoring.ToString().ToLowerInvariant();
        settings["limit"] = Limit;
        var sets = new JsonObject();
        foreach (var set in Sets)
        {
            var rows = new JsonObject();
            foreach (var s in Scores.Where(s => s.Set == set))
                rows[s.Row] = new JsonObject
                {
                    ["score"] = Pct(s.Result.Score), ["l1"] = Table(s.Result.L1), ["l2"] = Table(s.Result.L2),
                    ["scored"] = s.Result.Items.Count, ["skipped"] = s.Result.Skipped.Count,
                };
            sets[set] = new JsonObject { ["prompts"] = Scores.Where(s => s.Set == set).Select(s => s.Prompts).DefaultIfEmpty(0).Max(), ["rows"] = rows };
        }
        var skipped = new JsonObject();
        foreach (var (k, v) in SkippedRows) skipped[k] = v;
        var root = new JsonObject { ["settings"] = settings, ["sets"] = sets, ["skipped_rows"] = skipped };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    /// <summary>A markdown table: one line per row; for each set its overall score and its L1 categories (×100).</summary>
    public string ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        string F(double? v) => v is { } x && double.IsFinite(x) ? (x * 100).ToString("F2", inv) : "–";
        var columns = Sets.SelectMany(set => Categories(set).Prepend("overall").Select(c => (Set: set, Category: c))).ToList();
        var md = new StringBuilder();
        md.Append("| row |").AppendJoin("", columns.Select(c => $" {c.Set} {c.Category} |")).Append('\n');
        md.Append("|---|").AppendJoin("", columns.Select(_ => "---:|")).Append('\n');
        foreach (var row in Rows)
        {
            md.Append($"| {row} |");
            foreach (var (set, category) in columns)
            {
                var s = Find(set, row)?.Result;
                double? v = s == null ? null : category == "overall" ? s.Score : s.L1.TryGetValue(category, out var c) ? c : null;
                md.Append($" {F(v)} |");
            }
            md.Append('\n');
        }
        md.Append('\n');
        var counts = Sets.Select(set => $"{set} {Scores.Where(s => s.Set == set).Select(s => s.Result.Items.Count).DefaultIfEmpty(0).Max()} prompts");
        md.Append(string.Create(inv, $"DPG-Bench scores ×100 ({Scoring.ToString().ToLowerInvariant()} scoring, shapes judge; {string.Join(", ", counts)} scored); " +
                                      $"{Settings.Images} image(s) per prompt, {Settings.Steps} steps, {Settings.Scheduler}, guidance {Settings.Guidance}, seed {Settings.Seed}, {Settings.DType}."));
        md.Append('\n');
        if (SkippedRows.Count > 0) md.Append($"Not run: {string.Join("; ", SkippedRows.Select(kv => $"{kv.Key} ({kv.Value})"))}.\n");
        return md.ToString();
    }
}
