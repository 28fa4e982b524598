using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.T5;

/// <summary>
/// T5 self-attention: q, k, v, o without bias, no 1/√d scaling of the scores, and an additive position bias (relative
/// buckets, computed by the first layer only and shared by all layers) that already carries the padding mask.
/// </summary>
public sealed class T5Attention : nn.Module<Tensor, Tensor, Tensor>
{
    readonly Linear q;
    readonly Linear k;
    readonly Linear v;
    readonly Linear o;
    readonly Embedding? relative_attention_bias;
    readonly int _heads;
    readonly int _dKv;
    readonly int _numBuckets;
    readonly int _maxDistance;

    public T5Attention(int dModel, int dKv, int heads, bool hasRelativeAttentionBias, int numBuckets, int maxDistance)
        : base(nameof(T5Attention))
    {
        int inner = heads * dKv;
        q = Layers.Linear(dModel, inner, hasBias: false);
        k = Layers.Linear(dModel, inner, hasBias: false);
        v = Layers.Linear(dModel, inner, hasBias: false);
        o = Layers.Linear(inner, dModel, hasBias: false);
        if (hasRelativeAttentionBias) relative_attention_bias = Layers.Embedding(numBuckets, heads);
        _heads = heads;
        _dKv = dKv;
        _numBuckets = numBuckets;
        _maxDistance = maxDistance;
        RegisterComponents();
    }

    /// <summary>Bucket of (key position − query position), bidirectional, as transformers computes it (float32 logs).</summary>
    public static Tensor RelativePositionBucket(long queryLength, long keyLength, int numBuckets, int maxDistance, Device device)
    {
        using var scope = NewDisposeScope();
        var context = arange(queryLength, dtype: ScalarType.Int64, device: device).unsqueeze(1);
        var memory = arange(keyLength, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        var relative = memory - context;
        int half = numBuckets / 2;
        var buckets = relative.gt(0).to_type(ScalarType.Int64) * half;
        relative = relative.abs();
        int maxExact = half / 2;
        var isSmall = relative.lt(maxExact);
        var large = (relative.to_type(ScalarType.Float32) / maxExact).log() / Math.Log((double)maxDistance / maxExact) * (half - maxExact);
        var largeBucket = (large.to_type(ScalarType.Int64) + maxExact).clamp_max(half - 1);
        buckets = buckets + where(isSmall, relative, largeBucket);
        return buckets.MoveToOuterDisposeScope();
    }

    /// <summary>Relative position bias [1, heads, q, k] of this (first) layer.</summary>
    public Tensor ComputeBias(long queryLength, long keyLength, Device device)
    {
        if (relative_attention_bias is null) throw new InvalidOperationException("only the first T5 layer has relative_attention_bias");
        using var scope = NewDisposeScope();
        var buckets = RelativePositionBucket(queryLength, keyLength, _numBuckets, _maxDistance, device);
        var values = relative_attention_bias.forward(buckets); // [q, k, heads]
        return values.permute(2, 0, 1).unsqueeze(0).MoveToOuterDisposeScope();
    }

    public bool HasRelativeAttentionBias => relative_attention_bias is not null;

    /// <param name="hidden">[B, L, d_model]</param>
    /// <param name="positionBias">[B or 1, heads, L, L]: relative bias plus the additive padding mask</param>
    public override Tensor forward(Tensor hidden, Tensor positionBias)
    {
        using var scope = NewDisposeScope();
        long b = hidden.shape[0], l = hidden.shape[1];
        Tensor Heads(Tensor t) => t.view(b, l, _heads, _dKv).transpose(1, 2);
        // scaled_dot_product_attention divides by √d_kv; T5 does not scale, so pre-multiply the queries.
        var qh = Heads(q.forward(hidden)) * Math.Sqrt(_dKv);
        var kh = Heads(k.forward(hidden));
        var vh = Heads(v.forward(hidden));
        var attn = nn.functional.scaled_dot_product_attention(qh, kh, vh, positionBias.to_type(qh.dtype));
        var merged = attn.transpose(1, 2).reshape(b, l, _heads * _dKv);
        return o.forward(merged).MoveToOuterDisposeScope();
    }
}
