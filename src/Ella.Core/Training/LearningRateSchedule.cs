namespace Ella.Training;

/// <summary>
/// The learning rate per optimizer step, as diffusers' <c>get_scheduler</c> computes it (a LambdaLR stepped after each
/// optimizer step): linear warm-up from 0 over <c>warmup</c> steps, then constant, cosine (half a cycle to 0) or linear
/// decay to 0 at <c>totalSteps</c>. Stateless: a resumed run recomputes it from the step number.
/// </summary>
public sealed record LearningRateSchedule(string Kind, double BaseLr, int WarmupSteps, int TotalSteps)
{
    public static readonly string[] Kinds = ["constant", "cosine", "linear"];

    public void Validate()
    {
        if (!Kinds.Contains(Kind)) throw new EllaException($"--lr-schedule '{Kind}' is not known (choose one of: {string.Join(", ", Kinds)})");
        if (!(BaseLr > 0) || double.IsInfinity(BaseLr)) throw new EllaException($"--lr must be positive, got {BaseLr}");
        if (WarmupSteps < 0) throw new EllaException($"--warmup-steps must be ≥ 0, got {WarmupSteps}");
    }

    /// <summary>The learning rate used by optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(int step) => BaseLr * Factor(step);

    double Factor(int step)
    {
        if (step < WarmupSteps) return step / (double)Math.Max(1, WarmupSteps);
        if (Kind == "constant") return 1.0;
        double progress = (step - WarmupSteps) / (double)Math.Max(1, TotalSteps - WarmupSteps);
        return Kind == "cosine"
            ? Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * 2.0 * 0.5 * progress)))
            : Math.Max(0.0, (TotalSteps - step) / (double)Math.Max(1, TotalSteps - WarmupSteps));
    }
}
