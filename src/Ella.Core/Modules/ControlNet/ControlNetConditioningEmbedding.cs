using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.ControlNet;

/// <summary>diffusers' <c>ControlNetConditioningEmbedding</c>: the control image (pixel size) → latent size, through
/// conv_in, pairs of 3×3 convs (the second of each pair with stride 2), SiLU between, and the zero conv_out.</summary>
public sealed class ControlNetConditioningEmbedding : nn.Module<Tensor, Tensor>
{
    readonly Conv2d conv_in;
    readonly ModuleList<Conv2d> blocks;
    readonly Conv2d conv_out;

    public ControlNetConditioningEmbedding(int embeddingChannels, int conditioningChannels, int[] blockOutChannels) : base(nameof(ControlNetConditioningEmbedding))
    {
        conv_in = Layers.Conv2d(conditioningChannels, blockOutChannels[0], 3, padding: 1);
        var list = new List<Conv2d>();
        for (int i = 0; i < blockOutChannels.Length - 1; i++)
        {
            list.Add(Layers.Conv2d(blockOutChannels[i], blockOutChannels[i], 3, padding: 1));
            list.Add(Layers.Conv2d(blockOutChannels[i], blockOutChannels[i + 1], 3, stride: 2, padding: 1));
        }
        blocks = nn.ModuleList(list.ToArray());
        conv_out = Layers.Conv2d(blockOutChannels[^1], embeddingChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor conditioning)
    {
        using var scope = NewDisposeScope();
        var e = nn.functional.silu(conv_in.forward(conditioning));
        foreach (var block in blocks) e = nn.functional.silu(block.forward(e));
        return conv_out.forward(e).MoveToOuterDisposeScope();
    }
}
