namespace Ella.Evaluation.WorldBench;

/// <summary>After each generated prompt: where the run is, in its row and overall (prompts generated in this run).</summary>
public sealed record WorldEvalProgress(string Set, string Row, string ItemId, int RowDone, int RowTotal, int Done, int Total, TimeSpan Elapsed)
{
    public double SecondsPerPrompt => Done == 0 ? 0 : Elapsed.TotalSeconds / Done;
    public TimeSpan Eta => TimeSpan.FromSeconds(SecondsPerPrompt * (Total - Done));
}
