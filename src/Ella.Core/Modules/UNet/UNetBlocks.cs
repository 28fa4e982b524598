using Ella.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.UNet;

/// <summary>What every UNet block shares: the config, and the typed views over its ModuleLists.</summary>
public sealed record BlockSettings(int Groups, double Eps, int TembChannels, int CrossAttentionDim, bool UseLinearProjection, bool UpcastAttention)
{
    public static BlockSettings From(UNet2DConditionConfig c) =>
        new(c.NormNumGroups, c.NormEps, c.BlockOutChannels[0] * 4, c.CrossAttentionDim, c.UseLinearProjection, c.UpcastAttention);
}

/// <summary>
/// <c>CrossAttnDownBlock2D</c> (with attentions) or <c>DownBlock2D</c> (without): resnets, optional transformers, and a
/// down-sampler except in the last block. Returns the final hidden state and every skip output.
/// </summary>
public sealed class DownBlock2D : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    readonly ModuleList<Transformer2DModel>? attentions;
    readonly ModuleList<ResnetBlock2D> resnets;
    readonly ModuleList<Downsample2D>? downsamplers;

    public DownBlock2D(int inChannels, int outChannels, int layers, bool withAttention, int heads, int transformerLayers,
        bool addDownsample, int downsamplePadding, BlockSettings s) : base(withAttention ? "CrossAttnDownBlock2D" : "DownBlock2D")
    {
        resnets = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, s.TembChannels, s.Groups, s.Eps)).ToArray());
        if (withAttention)
            attentions = nn.ModuleList(Enumerable.Range(0, layers)
                .Select(_ => new Transformer2DModel(heads, outChannels / heads, outChannels, s.CrossAttentionDim, transformerLayers, s.Groups, s.UseLinearProjection, s.UpcastAttention)).ToArray());
        if (addDownsample) downsamplers = nn.ModuleList(new Downsample2D(outChannels, downsamplePadding));
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor temb, Tensor? context) => Run(hidden, temb, context, new List<Tensor>());

    /// <summary>Runs the block, appending each skip output to <paramref name="skips"/>.</summary>
    /// <param name="contextBias">additive bias over the context's tokens ([B, 1, 1, L]), or null</param>
    public Tensor Run(Tensor hidden, Tensor temb, Tensor? context, List<Tensor> skips, Tensor? contextBias = null)
    {
        for (int i = 0; i < resnets.Count; i++)
        {
            hidden = resnets[i].forward(hidden, temb);
            if (attentions is not null) hidden = attentions[i].Forward(hidden, context!, contextBias);
            skips.Add(hidden);
        }
        if (downsamplers is not null)
        {
            hidden = downsamplers[0].forward(hidden);
            skips.Add(hidden);
        }
        return hidden;
    }
}

/// <summary>
/// <c>CrossAttnUpBlock2D</c> or <c>UpBlock2D</c>: each resnet takes the hidden state concatenated with the matching
/// skip output; an up-sampler (to the next skip's size) except in the last block.
/// </summary>
public sealed class UpBlock2D : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    readonly ModuleList<Transformer2DModel>? attentions;
    readonly ModuleList<ResnetBlock2D> resnets;
    readonly ModuleList<Upsample2D>? upsamplers;

    public UpBlock2D(int inChannels, int prevOutputChannels, int outChannels, int layers, bool withAttention, int heads,
        int transformerLayers, bool addUpsample, BlockSettings s) : base(withAttention ? "CrossAttnUpBlock2D" : "UpBlock2D")
    {
        resnets = nn.ModuleList(Enumerable.Range(0, layers).Select(i =>
        {
            int skip = i == layers - 1 ? inChannels : outChannels;
            int resIn = i == 0 ? prevOutputChannels : outChannels;
            return new ResnetBlock2D(resIn + skip, outChannels, s.TembChannels, s.Groups, s.Eps);
        }).ToArray());
        if (withAttention)
            attentions = nn.ModuleList(Enumerable.Range(0, layers)
                .Select(_ => new Transformer2DModel(heads, outChannels / heads, outChannels, s.CrossAttentionDim, transformerLayers, s.Groups, s.UseLinearProjection, s.UpcastAttention)).ToArray());
        if (addUpsample) upsamplers = nn.ModuleList(new Upsample2D(outChannels));
        RegisterComponents();
    }

    public int SkipCount => resnets.Count;

    public override Tensor forward(Tensor hidden, Tensor temb, Tensor? context) => throw new NotSupportedException("use Run");

    /// <param name="skips">this block's skip outputs, last first consumed from the end</param>
    /// <param name="upsampleSize">target size of the up-sampler, or null for 2×</param>
    /// <param name="contextBias">additive bias over the context's tokens ([B, 1, 1, L]), or null</param>
    public Tensor Run(Tensor hidden, Tensor temb, Tensor? context, List<Tensor> skips, long[]? upsampleSize, Tensor? contextBias = null)
    {
        for (int i = 0; i < resnets.Count; i++)
        {
            var skip = skips[^1];
            skips.RemoveAt(skips.Count - 1);
            hidden = resnets[i].forward(cat([hidden, skip], 1), temb);
            if (attentions is not null) hidden = attentions[i].Forward(hidden, context!, contextBias);
        }
        if (upsamplers is not null) hidden = upsamplers[0].forward(hidden, upsampleSize);
        return hidden;
    }
}

/// <summary><c>UNetMidBlock2DCrossAttn</c>: resnet, then (transformer, resnet) per layer.</summary>
public sealed class UNetMidBlock2DCrossAttn : nn.Module<Tensor, Tensor, Tensor?, Tensor>
{
    readonly ModuleList<Transformer2DModel> attentions;
    readonly ModuleList<ResnetBlock2D> resnets;

    public UNetMidBlock2DCrossAttn(int channels, int heads, int transformerLayers, BlockSettings s, int layers = 1)
        : base(nameof(UNetMidBlock2DCrossAttn))
    {
        attentions = nn.ModuleList(Enumerable.Range(0, layers)
            .Select(_ => new Transformer2DModel(heads, channels / heads, channels, s.CrossAttentionDim, transformerLayers, s.Groups, s.UseLinearProjection, s.UpcastAttention)).ToArray());
        resnets = nn.ModuleList(Enumerable.Range(0, layers + 1).Select(_ => new ResnetBlock2D(channels, channels, s.TembChannels, s.Groups, s.Eps)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor temb, Tensor? context) => Run(hidden, temb, context, null);

    /// <param name="contextBias">additive bias over the context's tokens ([B, 1, 1, L]), or null</param>
    public Tensor Run(Tensor hidden, Tensor temb, Tensor? context, Tensor? contextBias)
    {
        hidden = resnets[0].forward(hidden, temb);
        for (int i = 0; i < attentions.Count; i++)
        {
            hidden = attentions[i].Forward(hidden, context!, contextBias);
            hidden = resnets[i + 1].forward(hidden, temb);
        }
        return hidden;
    }
}
