using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// Learned latents plus time_aware_linear(silu(t_emb)), refined by <c>layers</c> perceiver blocks over the projected
/// text features. Optional proj_in (text width ≠ width) and proj_out (Linear + LayerNorm to output_dim).
/// </summary>
public sealed class PerceiverResampler : nn.Module<Tensor, Tensor, Tensor>
{
    readonly Parameter latents;
    readonly Linear time_aware_linear;
    readonly Linear? proj_in;
    readonly ModuleList<nn.Module<Tensor, Tensor, Tensor, Tensor>> perceiver_blocks;
    readonly Sequential? proj_out;

    /// <param name="gated">AdaLN-Zero blocks (<see cref="GatedPerceiverAttentionBlock"/>) instead of the released TSC blocks</param>
    public PerceiverResampler(int width, int layers, int heads, int numLatents, int? inputDim, int? outputDim, int timeEmbeddingDim, bool gated = false)
        : base(nameof(PerceiverResampler))
    {
        latents = Layers.Parameter([numLatents, width], () => randn(numLatents, width).mul_(Math.Pow(width, -0.5)));
        time_aware_linear = Layers.Linear(timeEmbeddingDim, width);
        if (inputDim is { } inDim) proj_in = Layers.Linear(inDim, width);
        perceiver_blocks = nn.ModuleList(Enumerable.Range(0, layers).Select(_ => gated
            ? (nn.Module<Tensor, Tensor, Tensor, Tensor>)new GatedPerceiverAttentionBlock(width, heads, timeEmbeddingDim)
            : new PerceiverAttentionBlock(width, heads, timeEmbeddingDim)).ToArray());
        if (outputDim is { } outDim)
            proj_out = nn.Sequential(("0", Layers.Linear(width, outDim)), ("1", Layers.LayerNorm(outDim, 1e-5)));
        RegisterComponents();
    }

    /// <param name="text">[B, L, input_dim]</param>
    /// <param name="timestepEmbedding">[B, 1, time_embed_dim]</param>
    /// <returns>[B, num_latents, width or output_dim]</returns>
    public override Tensor forward(Tensor text, Tensor timestepEmbedding)
    {
        using var scope = NewDisposeScope();
        var h = latents.unsqueeze(0).add(time_aware_linear.forward(nn.functional.silu(timestepEmbedding)));
        if (h.shape[0] != text.shape[0]) h = h.expand(text.shape[0], -1, -1);
        var x = proj_in is null ? text : proj_in.forward(text);
        foreach (var block in perceiver_blocks) h = block.forward(x, h, timestepEmbedding);
        if (proj_out is not null) h = proj_out.forward(h);
        return h.MoveToOuterDisposeScope();
    }
}
