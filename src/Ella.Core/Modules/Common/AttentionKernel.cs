using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>
/// Scaled dot-product attention for every module. Inference uses libtorch's fused <c>scaled_dot_product_attention</c>.
/// When autograd records (training), it uses the explicit form softmax(q·kᵀ/√d + mask)·v instead: libtorch 2.10's
/// fused CPU backward intermittently returned NaN gradients here (finite loss, NaN in the key/value gradients,
/// different steps on different runs), which the explicit form never does.
/// </summary>
public static class AttentionKernel
{
    /// <param name="mask">additive float mask or null</param>
    /// <param name="causal">mask out keys after the query's position</param>
    public static Tensor Sdpa(Tensor q, Tensor k, Tensor v, Tensor? mask = null, bool causal = false)
    {
        bool recording = is_grad_enabled() && (q.requires_grad || k.requires_grad || v.requires_grad);
        if (!recording)
            return mask is null ? nn.functional.scaled_dot_product_attention(q, k, v, is_casual: causal)
                : nn.functional.scaled_dot_product_attention(q, k, v, mask, is_casual: causal);
        using var scope = NewDisposeScope();
        double scale = 1.0 / Math.Sqrt(q.shape[^1]);
        var scores = matmul(q * scale, k.transpose(-2, -1));
        if (mask is not null) scores = scores + mask.to_type(scores.dtype);
        if (causal)
        {
            long lq = q.shape[^2], lk = k.shape[^2];
            using var allowed = ones(lq, lk, dtype: ScalarType.Bool, device: q.device).tril();
            scores = scores.masked_fill(allowed.logical_not(), double.NegativeInfinity);
        }
        // Softmax in float32 at least (bf16/fp16 scores upcast; float64 stays float64).
        var softmaxType = scores.dtype is ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        var weights = scores.to_type(softmaxType).softmax(-1).to_type(v.dtype);
        return matmul(weights, v).MoveToOuterDisposeScope();
    }
}
