using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>
/// diffusers' <c>Attention</c> (parameter names <c>to_q</c>, <c>to_k</c>, <c>to_v</c>, <c>to_out.0</c>, and
/// <c>group_norm</c> for the VAE's spatial self-attention), computed with scaled_dot_product_attention.
/// Self-attention when no context is given, cross-attention otherwise.
/// </summary>
public sealed class Attention : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly GroupNorm? group_norm;
    readonly Linear to_q;
    readonly Linear to_k;
    readonly Linear to_v;
    readonly ModuleList<Linear> to_out;
    readonly int _heads;
    readonly int _dimHead;
    readonly bool _upcast;
    readonly bool _residual;

    /// <param name="queryDim">channels of the input</param>
    /// <param name="crossAttentionDim">channels of the context (null = self-attention)</param>
    /// <param name="qkvBias">bias on to_q/to_k/to_v (false in the UNet, true in the VAE)</param>
    /// <param name="upcastAttention">compute attention in float32 when the model runs in reduced precision</param>
    /// <param name="groupNormGroups">VAE form: GroupNorm first, input [B,C,H,W], output + residual</param>
    public Attention(int queryDim, int? crossAttentionDim, int heads, int dimHead, bool qkvBias = false,
        bool upcastAttention = false, int? groupNormGroups = null, double groupNormEps = 1e-6) : base(nameof(Attention))
    {
        int inner = heads * dimHead;
        if (groupNormGroups is { } g) group_norm = Layers.GroupNorm(g, queryDim, groupNormEps);
        to_q = Layers.Linear(queryDim, inner, qkvBias);
        to_k = Layers.Linear(crossAttentionDim ?? queryDim, inner, qkvBias);
        to_v = Layers.Linear(crossAttentionDim ?? queryDim, inner, qkvBias);
        to_out = nn.ModuleList(Layers.Linear(inner, queryDim, true));
        _heads = heads;
        _dimHead = dimHead;
        _upcast = upcastAttention;
        _residual = groupNormGroups != null;
        RegisterComponents();
    }

    /// <param name="hidden">[B, L, C], or [B, C, H, W] for the VAE form</param>
    /// <param name="context">[B, Lc, Cc] for cross-attention, or null</param>
    public override Tensor forward(Tensor hidden, Tensor? context) => Forward(hidden, context, null);

    /// <param name="contextBias">additive bias over the context's tokens, [B, 1, 1, Lc] (0 keeps a token, a large
    /// negative number drops it: diffusers' encoder_attention_mask), or null</param>
    public Tensor Forward(Tensor hidden, Tensor? context, Tensor? contextBias)
    {
        using var scope = NewDisposeScope();
        var input = hidden;
        long b = hidden.shape[0];
        long[]? spatial = null;
        if (hidden.dim() == 4)
        {
            spatial = hidden.shape;
            hidden = hidden.reshape(b, spatial[1], spatial[2] * spatial[3]).transpose(1, 2);
        }
        if (group_norm is not null) hidden = group_norm.forward(hidden.transpose(1, 2)).transpose(1, 2);
        var kv = context ?? hidden;
        Tensor Heads(Tensor t) => t.view(b, -1, _heads, _dimHead).transpose(1, 2);
        // LinearKernel calls the module (not forward) when autograd records, so hooks run: a LoRA being trained adds its term there.
        var q = Heads(LinearKernel.Apply(to_q, hidden));
        var k = Heads(LinearKernel.Apply(to_k, kv));
        var v = Heads(LinearKernel.Apply(to_v, kv));
        var dtype = q.dtype;
        if (_upcast && dtype != ScalarType.Float32)
        {
            q = q.to_type(ScalarType.Float32);
            k = k.to_type(ScalarType.Float32);
            v = v.to_type(ScalarType.Float32);
        }
        var attn = AttentionKernel.Sdpa(q, k, v, contextBias?.to_type(q.dtype)).to_type(dtype);
        var merged = attn.transpose(1, 2).reshape(b, -1, _heads * _dimHead);
        var output = LinearKernel.Apply(to_out[0], merged);
        if (spatial != null) output = output.transpose(1, 2).reshape(spatial);
        if (_residual) output = output + input;
        return output.MoveToOuterDisposeScope();
    }
}
