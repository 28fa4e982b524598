using Ella.Modules.Common;
using Ella.Modules.UNet;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Vae;

/// <summary><c>DownEncoderBlock2D</c>: resnets without time embedding, then a stride-2 conv (padded right/bottom).</summary>
public sealed class DownEncoderBlock2D : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<ResnetBlock2D> resnets;
    readonly ModuleList<Downsample2D>? downsamplers;

    public DownEncoderBlock2D(int inChannels, int outChannels, int layers, bool addDownsample, int groups, double eps)
        : base(nameof(DownEncoderBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, layers).Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, groups, eps)).ToArray());
        if (addDownsample) downsamplers = nn.ModuleList(new Downsample2D(outChannels, padding: 0));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        foreach (var r in resnets) x = r.forward(x, null);
        return downsamplers is null ? x : downsamplers[0].forward(x);
    }
}

/// <summary><c>UpDecoderBlock2D</c>: resnets without time embedding, then nearest 2× + conv.</summary>
public sealed class UpDecoderBlock2D : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<ResnetBlock2D> resnets;
    readonly ModuleList<Upsample2D>? upsamplers;

    public UpDecoderBlock2D(int inChannels, int outChannels, int layers, bool addUpsample, int groups, double eps)
        : base(nameof(UpDecoderBlock2D))
    {
        resnets = nn.ModuleList(Enumerable.Range(0, layers).Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, null, groups, eps)).ToArray());
        if (addUpsample) upsamplers = nn.ModuleList(new Upsample2D(outChannels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        foreach (var r in resnets) x = r.forward(x, null);
        return upsamplers is null ? x : upsamplers[0].forward(x, null);
    }
}

/// <summary><c>UNetMidBlock2D</c> of the VAE: resnet, single-head spatial self-attention (with GroupNorm and residual), resnet.</summary>
public sealed class VaeMidBlock : nn.Module<Tensor, Tensor>
{
    readonly ModuleList<Attention>? attentions;
    readonly ModuleList<ResnetBlock2D> resnets;

    public VaeMidBlock(int channels, int groups, double eps, bool addAttention) : base("UNetMidBlock2D")
    {
        if (addAttention) attentions = nn.ModuleList(new Attention(channels, null, heads: 1, dimHead: channels, qkvBias: true, groupNormGroups: groups, groupNormEps: eps));
        resnets = nn.ModuleList(new ResnetBlock2D(channels, channels, null, groups, eps), new ResnetBlock2D(channels, channels, null, groups, eps));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = resnets[0].forward(x, null);
        if (attentions is not null) x = attentions[0].forward(x, null);
        return resnets[1].forward(x, null);
    }
}
