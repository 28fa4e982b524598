using Ella.Configs;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// What every connector variant is: text features [B, L, input_dim] and timesteps in, condition tokens for the UNet's
/// cross-attention out. The released TSC (<see cref="EllaConnector"/>) and the paper's Tab. 6 ablations (MLP,
/// resampler, AdaLN-Zero) derive from it; <see cref="Connectors"/> builds and loads the right one from a config.
/// </summary>
public abstract class ConnectorModule : nn.Module<Tensor, Tensor, Tensor>
{
    protected ConnectorModule(string name) : base(name) { }

    public abstract EllaConnectorConfig Config { get; }

    /// <summary>False when the output does not depend on the timestep (then a pipeline computes it once per prompt).</summary>
    public virtual bool TimestepAware => true;

    /// <summary>True when the connector gives one condition token per text token (MLP) instead of a fixed count.</summary>
    public virtual bool TokensFollowText => false;

    /// <summary>Saves weights with the config in the safetensors metadata, atomically.</summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? extraMetadata = null)
    {
        var metadata = new Dictionary<string, string> { [EllaConnectorConfig.MetadataKey] = Config.ToJson(), ["format"] = "pt" };
        if (extraMetadata != null) foreach (var (k, v) in extraMetadata) metadata[k] = v;
        SafetensorsWriter.Save(path, state_dict(), metadata);
    }
}
