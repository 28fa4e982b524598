using Ella.Evaluation.DpgBench;

namespace Ella.Evaluation.WorldBench;

/// <summary>The DPG scores of one row on one set (<paramref name="Prompts"/> prompts asked for).</summary>
public sealed record WorldEvalScore(string Set, string Row, int Prompts, DpgResult Result);
