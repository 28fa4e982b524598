using Ella.Evaluation.DpgBench;
using Ella.World.Splits;
using static TorchSharp.torch;

namespace Ella.Evaluation.WorldBench;

/// <summary>What <see cref="WorldEvaluator"/> runs: which sets and rows, and how the images are made and scored.</summary>
public sealed record WorldEvalOptions
{
    /// <summary>The world model folder (diffusers layout plus <c>ella/</c> and <c>ablations/</c>).</summary>
    public required string Model { get; init; }
    public required string OutDir { get; init; }
    public required IReadOnlyList<WorldEvalRow> Rows { get; init; }
    /// <summary>Rows left out before the run (row → why), reported in the results.</summary>
    public IReadOnlyDictionary<string, string> SkippedRows { get; init; } = new Dictionary<string, string>();
    public IReadOnlyList<WorldSplit> Sets { get; init; } = [WorldSplit.Eval, WorldSplit.Paraphrase];
    /// <summary>Images per prompt, 1 to 4: one image, or a 2×2 grid (unused cells white); each is a crop the judge reads.</summary>
    public int Images { get; init; } = 4;
    public int Steps { get; init; } = 20;
    public double Guidance { get; init; } = 7.5;
    public string Scheduler { get; init; } = "dpm++2m";
    /// <summary>Prompt k of a set (its index in the split) uses seed <c>Seed + k</c> for its whole batch.</summary>
    public long Seed { get; init; }
    /// <summary>The first N prompts of each set (null: all).</summary>
    public int? Limit { get; init; }
    public ScalarType DType { get; init; } = ScalarType.Float32;
    public DpgScoring Scoring { get; init; } = DpgScoring.Official;
    /// <summary>Prompts shown in <c>grid.png</c> (the first of the eval set), base vs ELLA.</summary>
    public int GridPrompts { get; init; } = 6;
}
