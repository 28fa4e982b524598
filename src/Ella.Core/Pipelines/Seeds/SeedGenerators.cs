using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>How a batch's random numbers are drawn (<c>--seed-mode</c>).</summary>
public enum SeedMode
{
    /// <summary>One CPU generator draws the whole [N,4,h,w] noise (diffusers with one generator).</summary>
    Batch,
    /// <summary>Image i has its own generator seeded with seed+i (diffusers' generator list, Automatic1111's batches):
    /// any image of a batch can be reproduced alone.</summary>
    PerImage,
}

/// <summary>
/// The run's CPU generators: one for the batch, or one per image. Every random draw goes through <see cref="Randn"/>,
/// which does what diffusers' randn_tensor does with one generator (one randn of the full shape) or a list (one
/// randn([1, …]) per row with generator i).
/// </summary>
public sealed class SeedGenerators
{
    public SeedMode Mode { get; }
    /// <summary>The batch generator (per-image: image 0's).</summary>
    public Generator Main { get; }
    /// <summary>Per-image generators, or null in batch mode.</summary>
    public IReadOnlyList<Generator>? Rows { get; }

    SeedGenerators(SeedMode mode, Generator main, IReadOnlyList<Generator>? rows)
    {
        Mode = mode;
        Main = main;
        Rows = rows;
    }

    public static SeedGenerators Create(SeedMode mode, long seed, int rows) => mode == SeedMode.Batch
        ? new(mode, new Generator((ulong)seed), null)
        : FromSeeds(Enumerable.Range(0, rows).Select(i => seed + i).ToArray());

    /// <summary>A generator list with these seeds (one per row).</summary>
    public static SeedGenerators FromSeeds(IReadOnlyList<long> seeds)
    {
        var rows = seeds.Select(s => new Generator((ulong)s)).ToList();
        return new(SeedMode.PerImage, rows[0], rows);
    }

    /// <summary>Standard normal float32 of <paramref name="shape"/> on the CPU; per-image mode needs shape[0] = rows.</summary>
    public Tensor Randn(long[] shape)
    {
        if (Rows == null) return randn(shape, dtype: ScalarType.Float32, generator: Main);
        if (shape[0] != Rows.Count) throw new ArgumentException($"per-image seeds: {shape[0]} rows drawn for {Rows.Count} generators");
        using var scope = NewDisposeScope();
        var one = (long[])shape.Clone();
        one[0] = 1;
        return cat(Rows.Select(g => randn(one, dtype: ScalarType.Float32, generator: g)).ToArray(), 0).MoveToOuterDisposeScope();
    }
}
