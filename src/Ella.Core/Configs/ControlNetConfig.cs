using System.Text.Json;
using System.Text.Json.Serialization;
using Ella.Weights;

namespace Ella.Configs;

/// <summary>
/// diffusers' <c>ControlNetModel</c> config (SD1.x/2.x subset); JSON names are the config.json keys. The encoder half
/// shares the UNet's options, so <see cref="AsUNetConfig"/> reuses <see cref="UNet2DConditionConfig"/>'s validation.
/// </summary>
public sealed class ControlNetConfig
{
    [JsonPropertyName("in_channels")] public int InChannels { get; set; } = 4;
    [JsonPropertyName("conditioning_channels")] public int ConditioningChannels { get; set; } = 3;
    [JsonPropertyName("flip_sin_to_cos")] public bool FlipSinToCos { get; set; } = true;
    [JsonPropertyName("freq_shift")] public double FreqShift { get; set; }
    [JsonPropertyName("down_block_types")] public string[] DownBlockTypes { get; set; } = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];
    [JsonPropertyName("mid_block_type")] public string? MidBlockType { get; set; } = "UNetMidBlock2DCrossAttn";
    [JsonPropertyName("only_cross_attention")] public JsonElement? OnlyCrossAttention { get; set; }
    [JsonPropertyName("block_out_channels")] public int[] BlockOutChannels { get; set; } = [320, 640, 1280, 1280];
    [JsonPropertyName("layers_per_block")] public int LayersPerBlock { get; set; } = 2;
    [JsonPropertyName("downsample_padding")] public int DownsamplePadding { get; set; } = 1;
    [JsonPropertyName("mid_block_scale_factor")] public double MidBlockScaleFactor { get; set; } = 1;
    [JsonPropertyName("act_fn")] public string ActFn { get; set; } = "silu";
    [JsonPropertyName("norm_num_groups")] public int NormNumGroups { get; set; } = 32;
    [JsonPropertyName("norm_eps")] public double NormEps { get; set; } = 1e-5;
    [JsonPropertyName("cross_attention_dim")] public int CrossAttentionDim { get; set; } = 1280;
    [JsonPropertyName("transformer_layers_per_block")] public JsonElement? TransformerLayersPerBlock { get; set; }
    [JsonPropertyName("encoder_hid_dim")] public int? EncoderHidDim { get; set; }
    [JsonPropertyName("attention_head_dim")] public JsonElement? AttentionHeadDim { get; set; }
    [JsonPropertyName("num_attention_heads")] public JsonElement? NumAttentionHeads { get; set; }
    [JsonPropertyName("use_linear_projection")] public bool UseLinearProjection { get; set; }
    [JsonPropertyName("class_embed_type")] public string? ClassEmbedType { get; set; }
    [JsonPropertyName("addition_embed_type")] public string? AdditionEmbedType { get; set; }
    [JsonPropertyName("num_class_embeds")] public int? NumClassEmbeds { get; set; }
    [JsonPropertyName("upcast_attention")] public bool UpcastAttention { get; set; }
    [JsonPropertyName("resnet_time_scale_shift")] public string ResnetTimeScaleShift { get; set; } = "default";
    [JsonPropertyName("controlnet_conditioning_channel_order")] public string ControlnetConditioningChannelOrder { get; set; } = "rgb";
    [JsonPropertyName("conditioning_embedding_out_channels")] public int[] ConditioningEmbeddingOutChannels { get; set; } = [16, 32, 96, 256];
    [JsonPropertyName("global_pool_conditions")] public bool GlobalPoolConditions { get; set; }

    /// <summary>The UNet config with the same encoder half (for the shared blocks and their validation).</summary>
    public UNet2DConditionConfig AsUNetConfig() => new()
    {
        InChannels = InChannels, FlipSinToCos = FlipSinToCos, FreqShift = FreqShift, DownBlockTypes = DownBlockTypes,
        MidBlockType = MidBlockType, OnlyCrossAttention = OnlyCrossAttention, BlockOutChannels = BlockOutChannels,
        LayersPerBlock = LayersPerBlock, DownsamplePadding = DownsamplePadding, MidBlockScaleFactor = MidBlockScaleFactor,
        ActFn = ActFn, NormNumGroups = NormNumGroups, NormEps = NormEps, CrossAttentionDim = CrossAttentionDim,
        TransformerLayersPerBlock = TransformerLayersPerBlock, EncoderHidDim = EncoderHidDim, AttentionHeadDim = AttentionHeadDim,
        NumAttentionHeads = NumAttentionHeads, UseLinearProjection = UseLinearProjection, ClassEmbedType = ClassEmbedType,
        AdditionEmbedType = AdditionEmbedType, NumClassEmbeds = NumClassEmbeds, UpcastAttention = UpcastAttention,
        ResnetTimeScaleShift = ResnetTimeScaleShift,
        UpBlockTypes = DownBlockTypes.Reverse().Select(t => t == "CrossAttnDownBlock2D" ? "CrossAttnUpBlock2D" : "UpBlock2D").ToArray(),
    };

    public void Validate(string source)
    {
        AsUNetConfig().Validate(source);
        if (ControlnetConditioningChannelOrder is not ("rgb" or "bgr"))
            throw new EllaException($"{source}: controlnet_conditioning_channel_order '{ControlnetConditioningChannelOrder}' is not supported (rgb, bgr)");
        if (ConditioningEmbeddingOutChannels.Length == 0) throw new EllaException($"{source}: conditioning_embedding_out_channels is empty");
        if (GlobalPoolConditions) throw new EllaException($"{source}: global_pool_conditions (shuffle ControlNets) is not supported");
    }

    public static ControlNetConfig Load(string file)
    {
        if (!File.Exists(file)) throw new EllaException($"{file}: ControlNet config.json not found");
        try
        {
            var cfg = JsonSerializer.Deserialize<ControlNetConfig>(File.ReadAllText(file))!;
            cfg.Validate(file);
            return cfg;
        }
        catch (JsonException e) { throw new EllaException($"{file}: not a valid ControlNet config ({e.Message})", e); }
    }

    /// <summary>
    /// The config of a single diffusers-layout file without config.json: SD1.5's ControlNet, with the channel widths,
    /// conditioning channels, embedding widths and cross-attention width read from the tensor shapes.
    /// </summary>
    public static ControlNetConfig FromShapes(ITensorSource source)
    {
        long[] Shape(string name) => source.Contains(name) ? source.GetInfo(name).Shape
            : throw new EllaException($"{source.Path}: not a diffusers ControlNet (no tensor '{name}'); original-layout ControlNet files (control_model.*) are not supported");
        var blocks = new List<int>();
        for (int i = 0; source.Contains($"down_blocks.{i}.resnets.0.conv1.weight"); i++) blocks.Add((int)Shape($"down_blocks.{i}.resnets.0.conv1.weight")[0]);
        if (blocks.Count == 0) Shape("down_blocks.0.resnets.0.conv1.weight");
        var embed = new List<int> { (int)Shape("controlnet_cond_embedding.conv_in.weight")[0] };
        for (int i = 1; source.Contains($"controlnet_cond_embedding.blocks.{i}.weight"); i += 2) embed.Add((int)Shape($"controlnet_cond_embedding.blocks.{i}.weight")[0]);
        var types = Enumerable.Range(0, blocks.Count).Select(i => source.Contains($"down_blocks.{i}.attentions.0.proj_in.weight") ? "CrossAttnDownBlock2D" : "DownBlock2D").ToArray();
        var projIn = source.Contains("down_blocks.0.attentions.0.proj_in.weight") ? Shape("down_blocks.0.attentions.0.proj_in.weight") : [];
        return new ControlNetConfig
        {
            BlockOutChannels = blocks.ToArray(),
            DownBlockTypes = types,
            InChannels = (int)Shape("conv_in.weight")[1],
            ConditioningChannels = (int)Shape("controlnet_cond_embedding.conv_in.weight")[1],
            ConditioningEmbeddingOutChannels = embed.ToArray(),
            CrossAttentionDim = (int)Shape("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight")[1],
            UseLinearProjection = projIn.Length == 2,
            AttentionHeadDim = JsonSerializer.SerializeToElement(8),
        };
    }
}
