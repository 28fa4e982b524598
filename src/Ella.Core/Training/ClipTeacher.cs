using Ella.Modules.Clip;
using Ella.Text;
using static TorchSharp.torch;

namespace Ella.Training;

/// <summary>
/// The base model's own text pathway as a teacher for the connector (<c>ella train --distill W</c>): the frozen UNet
/// conditioned on its CLIP text encoder's last hidden state for the same caption (padded to its tokenizer's model_max_length, as the SD1.5 pipeline and
/// the shapes world's base stage encode it; a dropped caption is the empty one, the base's unconditional branch). Its
/// prediction is a second, low-variance target: the connector's loss becomes
/// objective loss + W · mean((prediction − teacher prediction)²). The connector still reads only its own text
/// features; the teacher is used in training, never at inference.
/// </summary>
public sealed class ClipTeacher(ClipTextModel textEncoder, ClipTokenizer tokenizer, double weight)
{
    /// <summary>W: how much the distillation term weighs against the objective's loss.</summary>
    public double Weight { get; } = weight > 0 && double.IsFinite(weight) ? weight : throw new ArgumentOutOfRangeException(nameof(weight), "the distillation weight must be positive");

    /// <summary>
    /// What the teacher reads of a caption (null: the caption itself). The shapes world's connector captions may use
    /// words its base never saw; the teacher reads them in its own words.
    /// </summary>
    public Func<string, string>? Rewrite { get; init; }

    /// <summary>The teacher's condition [B, model_max_length, width] (no gradients) for each row's caption, or the empty caption where dropped.</summary>
    public Tensor Condition(IReadOnlyList<string> captions, bool[] drop, Device device)
    {
        if (captions.Count != drop.Length) throw new ArgumentException($"{captions.Count} captions for {drop.Length} rows");
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var input = tokenizer.InputIds(captions.Select((c, i) => drop[i] ? "" : Rewrite is null ? c : Rewrite(c)).ToList(), tokenizer.ModelMaxLength, device);
        return textEncoder.forward(input).MoveToOuterDisposeScope();
    }
}
