using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Training;

/// <summary><c>torch.nn.utils.clip_grad_norm_</c> with the L2 norm.</summary>
public static class GradientClipping
{
    /// <summary>
    /// The global L2 norm of all gradients (the norm of the per-parameter norms, in float32), returned before clipping.
    /// With <paramref name="maxNorm"/>, every gradient is multiplied by min(1, maxNorm / (norm + 1e-6)).
    /// </summary>
    public static double ClipGradNorm(IEnumerable<Parameter> parameters, double? maxNorm)
    {
        using var scope = NewDisposeScope();
        var grads = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!).ToList();
        if (grads.Count == 0) return 0.0;
        var norms = stack(grads.Select(g => linalg.vector_norm(g.to_type(ScalarType.Float32), 2)).ToArray());
        var total = linalg.vector_norm(norms, 2);
        if (maxNorm is { } max)
        {
            var coef = (max / (total + 1e-6)).clamp_max(1.0);
            foreach (var g in grads) g.mul_(coef.to_type(g.dtype));
        }
        return total.item<float>();
    }
}
