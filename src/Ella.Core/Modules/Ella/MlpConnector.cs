using Ella.Configs;
using Ella.Modules.Common;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// The paper's Tab. 6 "MLP" connector: Linear(input_dim, width) → GELU → Linear(width, width) on every text token; no
/// timestep, and as many condition tokens as the text has.
/// </summary>
public sealed class MlpConnector : ConnectorModule
{
    readonly Linear linear_1;
    readonly Linear linear_2;

    public override EllaConnectorConfig Config { get; }
    public override bool TimestepAware => false;
    public override bool TokensFollowText => true;

    public MlpConnector(EllaConnectorConfig config) : base(nameof(MlpConnector))
    {
        config.Validate("MLP connector config");
        Config = config;
        linear_1 = Layers.Linear(config.InputDim ?? config.Width, config.Width);
        linear_2 = Layers.Linear(config.Width, config.Width);
        RegisterComponents();
    }

    /// <param name="textFeatures">[B, L, input_dim]</param>
    /// <param name="timesteps">ignored</param>
    /// <returns>[B, L, width]</returns>
    public override Tensor forward(Tensor textFeatures, Tensor timesteps)
    {
        using var h = linear_1.forward(textFeatures);
        using var a = nn.functional.gelu(h);
        return linear_2.forward(a);
    }
}
