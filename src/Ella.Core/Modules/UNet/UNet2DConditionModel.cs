using Ella.Configs;
using Ella.Modules.Common;
using Ella.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.UNet;

/// <summary>
/// diffusers' <c>UNet2DConditionModel</c> for SD1.x/2.x, built from its config.json with diffusers' parameter names.
/// Predicts noise from (sample, timestep, encoder_hidden_states); the condition may have any length (64 ELLA tokens,
/// 77 CLIP, 141 concatenated).
/// </summary>
public sealed class UNet2DConditionModel : nn.Module<Tensor, Tensor, Tensor, Tensor>
{
    // Declared in diffusers' registration order, so state_dict lists keys as the checkpoints do.
    readonly Conv2d conv_in;
    readonly Timesteps time_proj;
    readonly TimestepEmbedding time_embedding;
    readonly ModuleList<DownBlock2D> down_blocks;
    readonly ModuleList<UpBlock2D> up_blocks;
    readonly UNetMidBlock2DCrossAttn mid_block;
    readonly GroupNorm conv_norm_out;
    readonly Conv2d conv_out;

    public UNet2DConditionConfig Config { get; }

    public UNet2DConditionModel(UNet2DConditionConfig config) : base(nameof(UNet2DConditionModel))
    {
        config.Validate("UNet config");
        Config = config;
        var ch = config.BlockOutChannels;
        int n = ch.Length;
        var heads = config.HeadsPerBlock();
        var tLayers = config.TransformerLayers();
        var s = BlockSettings.From(config);

        time_proj = new Timesteps(ch[0], config.FlipSinToCos, config.FreqShift);
        using (Layers.FullPrecision()) time_embedding = new TimestepEmbedding(ch[0], s.TembChannels, config.ActFn);
        conv_in = Layers.Conv2d(config.InChannels, ch[0], config.ConvInKernel, padding: (config.ConvInKernel - 1) / 2);

        var down = new List<DownBlock2D>();
        int output = ch[0];
        for (int i = 0; i < n; i++)
        {
            int input = output;
            output = ch[i];
            down.Add(new DownBlock2D(input, output, config.LayersPerBlock, config.DownBlockTypes[i] == "CrossAttnDownBlock2D",
                heads[i], tLayers[i], addDownsample: i < n - 1, config.DownsamplePadding, s));
        }
        down_blocks = nn.ModuleList(down.ToArray());

        mid_block = new UNetMidBlock2DCrossAttn(ch[^1], heads[^1], tLayers[^1], s);

        var up = new List<UpBlock2D>();
        var rch = ch.Reverse().ToArray();
        var rheads = heads.Reverse().ToArray();
        var rlayers = tLayers.Reverse().ToArray();
        output = rch[0];
        for (int i = 0; i < n; i++)
        {
            int prev = output;
            output = rch[i];
            int input = rch[Math.Min(i + 1, n - 1)];
            up.Add(new UpBlock2D(input, prev, output, config.LayersPerBlock + 1, config.UpBlockTypes[i] == "CrossAttnUpBlock2D",
                rheads[i], rlayers[i], addUpsample: i < n - 1, s));
        }
        up_blocks = nn.ModuleList(up.ToArray());

        conv_norm_out = Layers.GroupNorm(config.NormNumGroups, ch[0], config.NormEps);
        conv_out = Layers.Conv2d(ch[0], config.OutChannels, config.ConvOutKernel, padding: (config.ConvOutKernel - 1) / 2);
        RegisterComponents();
    }

    /// <param name="sample">[B, in_channels, h, w] noisy latents</param>
    /// <param name="timestep">0-dim, [1] or [B]; int or float</param>
    /// <param name="encoderHiddenStates">[B, L, cross_attention_dim]</param>
    /// <returns>[B, out_channels, h, w] predicted noise</returns>
    public override Tensor forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates) => Forward(sample, timestep, encoderHiddenStates, null);

    /// <param name="residuals">ControlNet residuals added to the skip outputs and the mid block's output, or null</param>
    /// <param name="encoderAttentionMask">[B, L]: 1 for a token the cross-attention reads, 0 for padding it skips
    /// (diffusers' encoder_attention_mask, turned into the same −10000 bias); null reads every token</param>
    public Tensor Forward(Tensor sample, Tensor timestep, Tensor encoderHiddenStates, UNetResiduals? residuals, Tensor? encoderAttentionMask = null)
    {
        using var scope = NewDisposeScope();
        var bias = EncoderAttentionMask.Bias(encoderAttentionMask, encoderHiddenStates, "UNet");
        long b = sample.shape[0];
        var t = timestep.reshape(-1);
        if (t.shape[0] == 1 && b > 1) t = t.expand(b);
        else if (t.shape[0] != b) throw new EllaException($"UNet: {t.shape[0]} timesteps for a batch of {b}");
        // The time embedding runs in its own dtype (float32 when the model loads in bf16), then joins the model dtype.
        var temb = time_embedding.forward(time_proj.forward(t).to_type(time_embedding.DType)).to_type(sample.dtype);

        if (Config.CenterInputSample) sample = 2 * sample - 1.0;
        var hidden = conv_in.forward(sample);
        var skips = new List<Tensor> { hidden };
        foreach (var block in down_blocks) hidden = block.Run(hidden, temb, encoderHiddenStates, skips, bias);
        if (residuals != null) residuals.AddToSkips(skips);
        hidden = mid_block.Run(hidden, temb, encoderHiddenStates, bias);
        if (residuals != null) hidden = hidden + residuals.Mid;

        // Latents whose size is not a multiple of 2^(number of up-samplers) up-sample to the skip's exact size.
        int factor = 1 << (up_blocks.Count - 1);
        bool explicitSize = sample.shape[2] % factor != 0 || sample.shape[3] % factor != 0;
        for (int i = 0; i < up_blocks.Count; i++)
        {
            var block = up_blocks[i];
            var blockSkips = skips.GetRange(skips.Count - block.SkipCount, block.SkipCount);
            skips.RemoveRange(skips.Count - block.SkipCount, block.SkipCount);
            long[]? size = explicitSize && i < up_blocks.Count - 1 ? skips[^1].shape[2..] : null;
            hidden = block.Run(hidden, temb, encoderHiddenStates, blockSkips, size, bias);
        }
        hidden = Layers.OutputConv(conv_out, nn.functional.silu(conv_norm_out.forward(hidden)));
        return hidden.MoveToOuterDisposeScope();
    }

    /// <summary>Loads a diffusers <c>unet/</c> folder (config.json + diffusion_pytorch_model.safetensors).</summary>
    public static UNet2DConditionModel FromPretrained(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(folder)) throw new EllaException($"{folder}: UNet folder not found");
        var config = UNet2DConditionConfig.Load(folder);
        using var source = Checkpoint.Open(folder);
        return FromSource(config, source, dtype, device);
    }

    /// <summary>Builds from a config and loads any tensor source in diffusers key layout.</summary>
    public static UNet2DConditionModel FromSource(UNet2DConditionConfig config, ITensorSource source, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        Pretrained.Load(() => new UNet2DConditionModel(config), source, dtype, device, "UNet");
}
