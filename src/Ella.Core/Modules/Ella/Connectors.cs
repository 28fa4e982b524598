using Ella.Configs;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>Builds and loads any connector variant from its config (<c>connector_type</c>).</summary>
public static class Connectors
{
    public const string Tsc = "tsc";
    public const string Mlp = "mlp";
    public const string Resampler = "resampler";
    public const string AdaLnZero = "adaln-zero";

    public static readonly string[] Types = [Tsc, Mlp, Resampler, AdaLnZero];

    /// <summary>A freshly initialised connector (the authors' init; PyTorch's default for plain linears).</summary>
    public static ConnectorModule Create(EllaConnectorConfig config) => config.ConnectorType switch
    {
        Mlp => new MlpConnector(config),
        Resampler => new ResamplerConnector(config),
        Tsc or AdaLnZero => new EllaConnector(config),
        _ => throw new EllaException($"connector_type '{config.ConnectorType}' is not known (choose one of: {string.Join(", ", Types)})"),
    };

    /// <summary>
    /// Loads a connector checkpoint of any type strictly; the config comes from the tensors, the file's metadata and a
    /// JSON file beside it (<see cref="EllaConnectorConfig.Resolve"/>), unless one is given.
    /// </summary>
    public static ConnectorModule FromPretrained(string path, ScalarType dtype = ScalarType.Float32, Device? device = null,
        EllaConnectorConfig? config = null)
    {
        using var source = Checkpoint.Open(path);
        var cfg = config ?? EllaConnectorConfig.Resolve(path, source);
        if (cfg.ConnectorType is Tsc or AdaLnZero) return EllaConnector.FromPretrained(path, dtype, device, cfg);
        return Common.Pretrained.Load(() => Create(cfg), source, dtype, device, $"{cfg.ConnectorType} connector");
    }
}
