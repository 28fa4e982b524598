using Ella.World.Language;
using Ella.World.Questions;
using Ella.World.Scenes;

namespace Ella.World.Splits;

public enum WorldSplit { Train, Eval, Paraphrase }

/// <summary>One scene with everything said about it.</summary>
public sealed record WorldItem(string Id, WorldSplit Split, long Index, Scene Scene, SceneFacts Facts, string DenseCaption,
    string ShortCaption, IReadOnlyList<WorldQuestion> Questions);

/// <summary>
/// The splits, all by seed. Item <c>i</c> of a split comes from its own generator, seeded by mixing the split's stream
/// number with <c>i</c>, so any item can be made alone and in any order, on any machine:
/// <list type="bullet">
/// <item><c>train</c>: an endless stream (one per <c>--seed</c>), training lexicon; ids <c>train0000000</c>, …</item>
/// <item><c>eval</c>: a fixed set of <see cref="EvalCount"/> dense prompts, training lexicon; ids <c>shapes0</c>…<c>shapes199</c>.</item>
/// <item><c>paraphrase</c>: a fixed set of <see cref="ParaphraseCount"/> prompts in the paraphrase lexicon, whose words
/// never occur in training captions; ids <c>paraphrase0</c>…</item>
/// </list>
/// Within an item the order of draws is fixed: scene, stated facts, dense caption, short caption.
/// </summary>
public static class WorldSplits
{
    public const int EvalCount = 200;
    public const int ParaphraseCount = 100;

    const ulong TrainStream = 0x7368617065735452UL, EvalStream = 0x7368617065734556UL, ParaphraseStream = 0x7368617065735041UL;

    public static WorldSplit Parse(string name) => name switch
    {
        "train" => WorldSplit.Train,
        "eval" => WorldSplit.Eval,
        "paraphrase" => WorldSplit.Paraphrase,
        _ => throw new EllaException($"--split {name}: expected train, eval or paraphrase"),
    };

    public static string Name(WorldSplit split) => split.ToString().ToLowerInvariant();

    /// <summary>Items in the split (null: endless).</summary>
    public static int? Size(WorldSplit split) => split switch
    {
        WorldSplit.Eval => EvalCount,
        WorldSplit.Paraphrase => ParaphraseCount,
        _ => null,
    };

    public static WorldItem Item(WorldSplit split, long index, long trainSeed = 0)
    {
        if (index < 0) throw new ArgumentOutOfRangeException(nameof(index));
        if (Size(split) is { } n && index >= n) throw new EllaException($"the {Name(split)} split has {n} items; index {index} is beyond it");
        ulong stream = split switch
        {
            WorldSplit.Train => TrainStream ^ (ulong)trainSeed * 0xA24BAED4963EE407UL,
            WorldSplit.Eval => EvalStream,
            _ => ParaphraseStream,
        };
        var rng = new WorldRandom(WorldRandom.Derive(stream, index));
        var lexicon = split == WorldSplit.Paraphrase ? Lexicon.Paraphrase : Lexicon.Training;
        var scene = SceneSampler.Sample(rng);
        var facts = SceneFacts.Choose(scene, rng);
        string dense = DenseCaptioner.Caption(facts, lexicon, rng);
        string brief = ShortCaptioner.Caption(facts, lexicon, rng);
        string id = split switch
        {
            WorldSplit.Train => $"train{index:D7}",
            WorldSplit.Eval => $"shapes{index}",
            _ => $"paraphrase{index}",
        };
        return new WorldItem(id, split, index, scene, facts, dense, brief, QuestionGraph.Build(facts));
    }
}
