using Ella.Configs;
using Ella.Modules.Common;
using Ella.Modules.UNet;
using Ella.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.ControlNet;

/// <summary>
/// diffusers' <c>ControlNetModel</c> (guess mode off): the UNet's encoder half plus the conditioning embedding, with a
/// zero 1×1 conv per skip output (<c>controlnet_down_blocks</c>) and one on the mid block (<c>controlnet_mid_block</c>).
/// Returns the residuals × conditioning scale that <see cref="UNet2DConditionModel.Forward"/> adds.
/// </summary>
public sealed class ControlNetModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    readonly Conv2d conv_in;
    readonly Timesteps time_proj;
    readonly TimestepEmbedding time_embedding;
    readonly ControlNetConditioningEmbedding controlnet_cond_embedding;
    readonly ModuleList<DownBlock2D> down_blocks;
    readonly ModuleList<Conv2d> controlnet_down_blocks;
    readonly UNetMidBlock2DCrossAttn mid_block;
    readonly Conv2d controlnet_mid_block;

    public ControlNetConfig Config { get; }

    public ControlNetModel(ControlNetConfig config) : base(nameof(ControlNetModel))
    {
        config.Validate("ControlNet config");
        Config = config;
        var unet = config.AsUNetConfig();
        var ch = config.BlockOutChannels;
        int n = ch.Length;
        var heads = unet.HeadsPerBlock();
        var tLayers = unet.TransformerLayers();
        var s = BlockSettings.From(unet);

        conv_in = Layers.Conv2d(config.InChannels, ch[0], 3, padding: 1);
        time_proj = new Timesteps(ch[0], config.FlipSinToCos, config.FreqShift);
        using (Layers.FullPrecision()) time_embedding = new TimestepEmbedding(ch[0], s.TembChannels, config.ActFn);
        controlnet_cond_embedding = new ControlNetConditioningEmbedding(ch[0], config.ConditioningChannels, config.ConditioningEmbeddingOutChannels);

        var down = new List<DownBlock2D>();
        var zero = new List<Conv2d> { Layers.Conv2d(ch[0], ch[0], 1) };
        int output = ch[0];
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = ch[i];
            bool final = i == n - 1;
            down.Add(new DownBlock2D(input, output, config.LayersPerBlock, config.DownBlockTypes[i] == "CrossAttnDownBlock2D",
                heads[i], tLayers[i], addDownsample: !final, config.DownsamplePadding, s));
            for (int l = 0; l < config.LayersPerBlock; l++) zero.Add(Layers.Conv2d(output, output, 1));
            if (!final) zero.Add(Layers.Conv2d(output, output, 1));
        }
        down_blocks = nn.ModuleList(down.ToArray());
        controlnet_down_blocks = nn.ModuleList(zero.ToArray());
        mid_block = new UNetMidBlock2DCrossAttn(ch[^1], heads[^1], tLayers[^1], s);
        controlnet_mid_block = Layers.Conv2d(ch[^1], ch[^1], 1);
        RegisterComponents();
    }

    /// <summary>Residuals for <paramref name="sample"/> (the UNet's scaled latents) and the control image.</summary>
    /// <param name="controlImage">[B, conditioning_channels, H, W] in [0, 1], RGB</param>
    public UNetResiduals Forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates, Tensor controlImage, double conditioningScale)
    {
        using var embedding = EmbedControl(controlImage, sample.dtype);
        return ForwardEmbedded(sample, timestep, encoderHiddenStates, embedding, conditioningScale);
    }

    /// <summary>
    /// The control image through <c>controlnet_cond_embedding</c> (pixel size → latent size, <c>ch[0]</c> channels).
    /// It depends on neither the latents nor the timestep, so a generation computes it once and passes it to
    /// <see cref="ForwardEmbedded"/> at every step (the same numbers as computing it per step, as diffusers does).
    /// </summary>
    public Tensor EmbedControl(Tensor controlImage, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        if (Config.ControlnetConditioningChannelOrder == "bgr") controlImage = controlImage.flip(1);
        return controlnet_cond_embedding.forward(controlImage.to_type(dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Residuals from a control embedding made by <see cref="EmbedControl"/>.</summary>
    /// <param name="encoderAttentionMask">[B, L] real condition tokens (1) and padding (0), as the UNet's; null reads every token</param>
    public UNetResiduals ForwardEmbedded(Tensor sample, Tensor timestep, Tensor encoderHiddenStates, Tensor controlEmbedding, double conditioningScale,
        Tensor? encoderAttentionMask = null)
    {
        using var scope = NewDisposeScope();
        var bias = EncoderAttentionMask.Bias(encoderAttentionMask, encoderHiddenStates, "ControlNet");
        long b = sample.shape[0];
        var t = timestep.reshape(-1);
        if (t.shape[0] == 1 && b > 1) t = t.expand(b);
        var temb = time_embedding.forward(time_proj.forward(t).to_type(time_embedding.DType)).to_type(sample.dtype);
        var hidden = conv_in.forward(sample) + controlEmbedding;
        var skips = new List<Tensor> { hidden };
        foreach (var block in down_blocks) hidden = block.Run(hidden, temb, encoderHiddenStates, skips, bias);
        hidden = mid_block.Run(hidden, temb, encoderHiddenStates, bias);
        // x · 1.0 == x exactly, so the common scale 1 skips the multiply.
        Tensor Scaled(Tensor r) => conditioningScale == 1.0 ? r : r * conditioningScale;
        var down = skips.Select((skip, i) => Scaled(controlnet_down_blocks[i].forward(skip))).ToList();
        var mid = Scaled(controlnet_mid_block.forward(hidden));
        foreach (var d in down) d.MoveToOuterDisposeScope();
        return new UNetResiduals(down, mid.MoveToOuterDisposeScope());
    }

    public override Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates) =>
        throw new NotSupportedException("ControlNetModel needs a control image: use Forward");

    /// <summary>A diffusers ControlNetModel folder (config.json + weights), or a single diffusers-layout .safetensors
    /// (config.json beside it when present, else the config is read from the tensor shapes).</summary>
    public static ControlNetModel FromPretrained(string path, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(path) && !File.Exists(path)) throw new EllaException($"{path}: ControlNet not found (a diffusers ControlNetModel folder or .safetensors file)");
        using var source = Checkpoint.Open(path);
        string configFile = Directory.Exists(path) ? Path.Combine(path, "config.json") : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "config.json");
        ControlNetConfig config;
        if (Directory.Exists(path)) config = ControlNetConfig.Load(configFile);
        else if (File.Exists(configFile) && File.ReadAllText(configFile).Contains("\"ControlNetModel\"")) config = ControlNetConfig.Load(configFile);
        else config = ControlNetConfig.FromShapes(source);
        return Pretrained.Load(() => new ControlNetModel(config), source, dtype, device, $"ControlNet {path}");
    }
}
