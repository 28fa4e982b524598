using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// <c>torch.nn.MultiheadAttention(batch_first=True)</c> with its parameter names (<c>in_proj_weight</c>,
/// <c>in_proj_bias</c>, <c>out_proj</c>), computed with scaled_dot_product_attention. Q, K and V use the three row
/// blocks of the packed projection.
/// </summary>
public sealed class PackedMultiheadAttention : nn.Module<Tensor, Tensor, Tensor>
{
    readonly Parameter in_proj_weight;
    readonly Parameter in_proj_bias;
    readonly Linear out_proj;
    readonly int _heads;
    readonly int _dim;

    public PackedMultiheadAttention(int embedDim, int heads) : base(nameof(PackedMultiheadAttention))
    {
        if (embedDim % heads != 0)
            throw new EllaException($"attention width {embedDim} is not divisible by {heads} heads");
        _heads = heads;
        _dim = embedDim;
        in_proj_weight = Layers.Parameter([3 * embedDim, embedDim], () => nn.init.xavier_uniform_(empty(3 * embedDim, embedDim)));
        in_proj_bias = Layers.Parameter([3 * embedDim], () => zeros(3 * embedDim));
        out_proj = Layers.Linear(embedDim, embedDim);
        if (!Layers.SkippingInit) using (no_grad()) out_proj.bias!.zero_(); // as torch.nn.MultiheadAttention
        RegisterComponents();
    }

    /// <param name="query">[B, Lq, D]</param>
    /// <param name="keyValue">[B, Lkv, D]; used as both key and value</param>
    public override Tensor forward(Tensor query, Tensor keyValue)
    {
        using var scope = NewDisposeScope();
        long b = query.shape[0], lq = query.shape[1], lkv = keyValue.shape[1];
        int headDim = _dim / _heads;
        var q = nn.functional.linear(query, in_proj_weight.narrow(0, 0, _dim), in_proj_bias.narrow(0, 0, _dim));
        var kv = nn.functional.linear(keyValue, in_proj_weight.narrow(0, _dim, 2 * _dim), in_proj_bias.narrow(0, _dim, 2 * _dim));
        var kvParts = kv.chunk(2, -1);
        var qh = q.view(b, lq, _heads, headDim).transpose(1, 2);
        var kh = kvParts[0].reshape(b, lkv, _heads, headDim).transpose(1, 2);
        var vh = kvParts[1].reshape(b, lkv, _heads, headDim).transpose(1, 2);
        var attn = Common.AttentionKernel.Sdpa(qh, kh, vh);
        var merged = attn.transpose(1, 2).reshape(b, lq, _dim);
        return out_proj.forward(merged).MoveToOuterDisposeScope();
    }
}
