using Ella.World.Rendering;
using Ella.World.Splits;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>
/// Training batches from the endless <c>train</c> stream: step s takes items s·B … s·B + B − 1 of the stream of
/// <paramref name="trainSeed"/>, so a resumed stage sees exactly the data it would have seen.
/// </summary>
public sealed class WorldBatches(int batch, long trainSeed, long offset = 0)
{
    public IReadOnlyList<WorldItem> Items(int step) =>
        Enumerable.Range(0, batch).Select(i => WorldSplits.Item(WorldSplit.Train, offset + (long)step * batch + i, trainSeed)).ToList();

    /// <summary>The items' renders as a float32 batch [B, 3, 64, 64] in [−1, 1], as the VAE reads images.</summary>
    public static Tensor Images(IReadOnlyList<WorldItem> items)
    {
        using var scope = NewDisposeScope();
        var images = items.Select(item => SceneRenderer.Render(item.Scene).ToTensor()).ToArray();
        return (stack(images) * 2 - 1).MoveToOuterDisposeScope();
    }
}
