using Ella.Configs;
using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// The paper's Tab. 6 "Resampler" connector: learned latents (randn · width^-0.5) refined by <c>layers</c> perceiver
/// blocks with affine LayerNorms over the projected text; no timestep. Output [B, num_latents, width].
/// </summary>
public sealed class ResamplerConnector : ConnectorModule
{
    readonly Parameter latents;
    readonly Linear? proj_in;
    readonly ModuleList<ResamplerBlock> perceiver_blocks;

    public override EllaConnectorConfig Config { get; }
    public override bool TimestepAware => false;

    public ResamplerConnector(EllaConnectorConfig config) : base(nameof(ResamplerConnector))
    {
        config.Validate("resampler connector config");
        Config = config;
        int width = config.Width;
        latents = Layers.Parameter([config.NumLatents, width], () => randn(config.NumLatents, width).mul_(Math.Pow(width, -0.5)));
        if (config.InputDim is { } inDim) proj_in = Layers.Linear(inDim, width);
        perceiver_blocks = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(_ => new ResamplerBlock(width, config.Heads)).ToArray());
        RegisterComponents();
    }

    /// <param name="textFeatures">[B, L, input_dim]</param>
    /// <param name="timesteps">ignored</param>
    public override Tensor forward(Tensor textFeatures, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        var x = proj_in is null ? textFeatures : proj_in.forward(textFeatures);
        var h = latents.unsqueeze(0).expand(textFeatures.shape[0], -1, -1);
        foreach (var block in perceiver_blocks) h = block.forward(x, h);
        return h.MoveToOuterDisposeScope();
    }
}
