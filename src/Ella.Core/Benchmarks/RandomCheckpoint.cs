using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Benchmarks;

/// <summary>
/// Writes a full-size checkpoint with random weights for a module built on the meta device (no memory for the
/// module itself), one tensor at a time. Used by <c>ella bench</c>, which needs no real weights.
/// </summary>
public static class RandomCheckpoint
{
    /// <summary>Writes <paramref name="metaModule"/>'s state dict (float32) to <paramref name="path"/>.</summary>
    public static void Write(nn.Module metaModule, string path, long seed = 0, Func<string, bool>? skip = null)
    {
        var specs = metaModule.state_dict()
            .Where(kv => skip == null || !skip(kv.Key))
            .Select(kv => new SafetensorsWriter.TensorSpec(kv.Key, SafetensorsDType.IsFloating(kv.Value.dtype) ? ScalarType.Float32 : kv.Value.dtype, kv.Value.shape))
            .ToList();
        var generator = new Generator((ulong)seed);
        SafetensorsWriter.SaveStreaming(path, specs, spec =>
        {
            if (!SafetensorsDType.IsFloating(spec.DType)) return zeros(spec.Shape, dtype: spec.DType);
            var t = randn(spec.Shape, dtype: ScalarType.Float32, generator: generator).mul_(0.02);
            // Norm weights near one, so activations keep a sane scale and no denormals slow the kernels.
            return spec.Shape.Length == 1 && spec.Name.Contains("norm") && spec.Name.EndsWith(".weight") ? t.add_(1.0) : t;
        }, new Dictionary<string, string> { ["format"] = "pt", ["ella_random"] = "true" });
    }

    /// <summary>Builds a module on the meta device.</summary>
    public static T OnMeta<T>(Func<T> factory)
    {
        var previous = get_default_device();
        set_default_device(META);
        try { return factory(); }
        finally { set_default_device(previous); }
    }
}
