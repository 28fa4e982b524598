using Ella.Configs;
using Ella.Modules.Common;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Modules.Ella;

/// <summary>
/// ELLA's Timestep-Aware Semantic Connector (the authors' <c>ELLA</c> class): LLM text features and the diffusion
/// timestep in, <c>num_latents</c> condition tokens for the UNet's cross-attention out. Parameter names equal the
/// released checkpoint's keys (time_embedding.*, connector.*). With connector_type "adaln-zero" its blocks carry the
/// paper's zero-initialised residual gates (<see cref="GatedPerceiverAttentionBlock"/>).
/// </summary>
public sealed class EllaConnector : ConnectorModule
{
    readonly Timesteps position;
    readonly TimestepEmbedding time_embedding;
    readonly PerceiverResampler connector;

    public override EllaConnectorConfig Config { get; }

    public EllaConnector(EllaConnectorConfig config) : base(nameof(EllaConnector))
    {
        config.Validate("ELLA config");
        Config = config;
        position = new Timesteps(config.TimeChannel, flipSinToCos: true, downscaleFreqShift: 0);
        using (Layers.FullPrecision()) time_embedding = new TimestepEmbedding(config.TimeChannel, config.TimeEmbedDim, config.ActFn, config.OutDim);
        connector = new PerceiverResampler(config.Width, config.Layers, config.Heads, config.NumLatents,
            config.InputDim, config.OutputDim, config.TimeEmbedDim, gated: config.ConnectorType == Connectors.AdaLnZero);
        RegisterComponents();
    }

    /// <param name="textFeatures">[B, L, input_dim] (e.g. FLAN-T5 last hidden state)</param>
    /// <param name="timesteps">0-dim, [1] or [B] timesteps, any numeric dtype; one timestep serves the whole batch.</param>
    /// <returns>[B, num_latents, width]</returns>
    public override Tensor forward(Tensor textFeatures, Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        long batch = textFeatures.shape[0];
        var t = timesteps.reshape(-1);
        if (t.shape[0] != 1 && t.shape[0] != batch)
            throw new EllaException($"ELLA: {t.shape[0]} timesteps for a batch of {batch}");
        // Sinusoids and the time MLP in the time embedding's dtype (float32 when the connector loads in bf16).
        var features = position.forward(t).to(time_embedding.DType, textFeatures.device).unsqueeze(1).expand(batch, -1, -1);
        var temb = time_embedding.forward(features).to_type(textFeatures.dtype);
        return connector.forward(textFeatures, temb).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads a connector checkpoint (file, or folder with a safetensors file) strictly, with its config resolved by
    /// <see cref="EllaConnectorConfig.Resolve"/> unless one is given.
    /// </summary>
    public static EllaConnector FromPretrained(string path, ScalarType dtype = ScalarType.Float32, Device? device = null,
        EllaConnectorConfig? config = null)
    {
        using var source = Checkpoint.Open(path);
        var cfg = config ?? EllaConnectorConfig.Resolve(path, source);
        return Common.Pretrained.Load(() => new EllaConnector(cfg), source, dtype, device, "ELLA connector");
    }
}
