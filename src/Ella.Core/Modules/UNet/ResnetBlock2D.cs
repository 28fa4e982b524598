using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.UNet;

/// <summary>
/// diffusers' <c>ResnetBlock2D</c> (default time scale-shift): GroupNorm → SiLU → conv1, plus the projected time
/// embedding, GroupNorm → SiLU → conv2, plus the (1×1-projected when channels change) input.
/// The VAE uses it without a time embedding.
/// </summary>
public sealed class ResnetBlock2D : nn.Module<Tensor, Tensor?, Tensor>
{
    readonly GroupNorm norm1;
    readonly Conv2d conv1;
    readonly Linear? time_emb_proj;
    readonly GroupNorm norm2;
    readonly Conv2d conv2;
    readonly Conv2d? conv_shortcut;
    readonly double _outputScale;

    public ResnetBlock2D(int inChannels, int outChannels, int? tembChannels, int groups, double eps, double outputScaleFactor = 1.0)
        : base(nameof(ResnetBlock2D))
    {
        norm1 = Layers.GroupNorm(groups, inChannels, eps);
        conv1 = Layers.Conv2d(inChannels, outChannels, 3, padding: 1);
        if (tembChannels is { } t) time_emb_proj = Layers.Linear(t, outChannels);
        norm2 = Layers.GroupNorm(groups, outChannels, eps);
        conv2 = Layers.Conv2d(outChannels, outChannels, 3, padding: 1);
        if (inChannels != outChannels) conv_shortcut = Layers.Conv2d(inChannels, outChannels, 1);
        _outputScale = outputScaleFactor;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor? temb)
    {
        using var scope = NewDisposeScope();
        var h = conv1.forward(nn.functional.silu(norm1.forward(x)));
        if (time_emb_proj is not null && temb is not null)
            h = h + time_emb_proj.forward(nn.functional.silu(temb)).unsqueeze(-1).unsqueeze(-1);
        h = conv2.forward(nn.functional.silu(norm2.forward(h)));
        var shortcut = conv_shortcut is null ? x : conv_shortcut.forward(x);
        var output = shortcut + h;
        if (_outputScale != 1.0) output = output / _outputScale;
        return output.MoveToOuterDisposeScope();
    }
}

/// <summary>A stride-2 3×3 convolution (<c>downsamplers.0.conv</c>).</summary>
public sealed class Downsample2D : nn.Module<Tensor, Tensor>
{
    readonly Conv2d conv;
    readonly int _padding;

    public Downsample2D(int channels, int padding) : base(nameof(Downsample2D))
    {
        conv = Layers.Conv2d(channels, channels, 3, stride: 2, padding: padding);
        _padding = padding;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        if (_padding != 0) return conv.forward(x);
        // diffusers pads (0, 1, 0, 1) when padding is 0 (the VAE encoder's downsamplers).
        using var padded = nn.functional.pad(x, [0, 1, 0, 1]);
        return conv.forward(padded);
    }
}

/// <summary>Nearest 2× up-sampling (or to an explicit size) followed by a 3×3 convolution (<c>upsamplers.0.conv</c>).</summary>
public sealed class Upsample2D : nn.Module<Tensor, long[]?, Tensor>
{
    readonly Conv2d conv;

    public Upsample2D(int channels) : base(nameof(Upsample2D))
    {
        conv = Layers.Conv2d(channels, channels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, long[]? outputSize)
    {
        using var up = outputSize is null
            ? nn.functional.interpolate(x, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest)
            : nn.functional.interpolate(x, size: outputSize, mode: InterpolationMode.Nearest);
        return conv.forward(up);
    }
}
