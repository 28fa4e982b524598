using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ella.Configs;

/// <summary>
/// diffusers' <c>UNet2DConditionModel</c> config (the SD1.x/2.x subset); JSON names are the config.json keys.
/// Options the model does not implement must keep their neutral value; <see cref="Validate"/> names any that do not.
/// </summary>
public sealed class UNet2DConditionConfig
{
    [JsonPropertyName("sample_size")] public int? SampleSize { get; set; } = 64;
    [JsonPropertyName("in_channels")] public int InChannels { get; set; } = 4;
    [JsonPropertyName("out_channels")] public int OutChannels { get; set; } = 4;
    [JsonPropertyName("center_input_sample")] public bool CenterInputSample { get; set; }
    [JsonPropertyName("flip_sin_to_cos")] public bool FlipSinToCos { get; set; } = true;
    [JsonPropertyName("freq_shift")] public double FreqShift { get; set; }
    [JsonPropertyName("down_block_types")] public string[] DownBlockTypes { get; set; } = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];
    [JsonPropertyName("mid_block_type")] public string? MidBlockType { get; set; } = "UNetMidBlock2DCrossAttn";
    [JsonPropertyName("up_block_types")] public string[] UpBlockTypes { get; set; } = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"];
    [JsonPropertyName("only_cross_attention")] public JsonElement? OnlyCrossAttention { get; set; }
    [JsonPropertyName("block_out_channels")] public int[] BlockOutChannels { get; set; } = [320, 640, 1280, 1280];
    [JsonPropertyName("layers_per_block")] public int LayersPerBlock { get; set; } = 2;
    [JsonPropertyName("downsample_padding")] public int DownsamplePadding { get; set; } = 1;
    [JsonPropertyName("mid_block_scale_factor")] public double MidBlockScaleFactor { get; set; } = 1;
    [JsonPropertyName("dropout")] public double Dropout { get; set; }
    [JsonPropertyName("act_fn")] public string ActFn { get; set; } = "silu";
    [JsonPropertyName("norm_num_groups")] public int NormNumGroups { get; set; } = 32;
    [JsonPropertyName("norm_eps")] public double NormEps { get; set; } = 1e-5;
    [JsonPropertyName("cross_attention_dim")] public int CrossAttentionDim { get; set; } = 1280;
    [JsonPropertyName("transformer_layers_per_block")] public JsonElement? TransformerLayersPerBlock { get; set; }
    /// <summary>Legacy name: diffusers uses it as the NUMBER of heads when num_attention_heads is null (int or per block).</summary>
    [JsonPropertyName("attention_head_dim")] public JsonElement? AttentionHeadDim { get; set; }
    [JsonPropertyName("num_attention_heads")] public JsonElement? NumAttentionHeads { get; set; }
    [JsonPropertyName("dual_cross_attention")] public bool DualCrossAttention { get; set; }
    [JsonPropertyName("use_linear_projection")] public bool UseLinearProjection { get; set; }
    [JsonPropertyName("class_embed_type")] public string? ClassEmbedType { get; set; }
    [JsonPropertyName("addition_embed_type")] public string? AdditionEmbedType { get; set; }
    [JsonPropertyName("num_class_embeds")] public int? NumClassEmbeds { get; set; }
    [JsonPropertyName("upcast_attention")] public bool UpcastAttention { get; set; }
    [JsonPropertyName("resnet_time_scale_shift")] public string ResnetTimeScaleShift { get; set; } = "default";
    [JsonPropertyName("resnet_out_scale_factor")] public double ResnetOutScaleFactor { get; set; } = 1.0;
    [JsonPropertyName("time_embedding_type")] public string TimeEmbeddingType { get; set; } = "positional";
    [JsonPropertyName("time_embedding_dim")] public int? TimeEmbeddingDim { get; set; }
    [JsonPropertyName("time_embedding_act_fn")] public string? TimeEmbeddingActFn { get; set; }
    [JsonPropertyName("timestep_post_act")] public string? TimestepPostAct { get; set; }
    [JsonPropertyName("time_cond_proj_dim")] public int? TimeCondProjDim { get; set; }
    [JsonPropertyName("conv_in_kernel")] public int ConvInKernel { get; set; } = 3;
    [JsonPropertyName("conv_out_kernel")] public int ConvOutKernel { get; set; } = 3;
    [JsonPropertyName("encoder_hid_dim")] public int? EncoderHidDim { get; set; }
    [JsonPropertyName("attention_type")] public string AttentionType { get; set; } = "default";
    [JsonPropertyName("cross_attention_norm")] public string? CrossAttentionNorm { get; set; }
    [JsonPropertyName("mid_block_only_cross_attention")] public bool? MidBlockOnlyCrossAttention { get; set; }

    /// <summary>Heads per down block (diffusers: num_attention_heads, else the legacy attention_head_dim).</summary>
    public int[] HeadsPerBlock()
    {
        var source = NumAttentionHeads is { ValueKind: not JsonValueKind.Null } n ? n : AttentionHeadDim ?? JsonSerializer.SerializeToElement(8);
        return PerBlock(source, "attention_head_dim");
    }

    static int Int(JsonElement x, string key) => x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int v)
        ? v : throw new EllaException($"UNet config: {key} must hold whole numbers, got {x.GetRawText()}");

    int[] PerBlock(JsonElement e, string key) => e.ValueKind switch
    {
        JsonValueKind.Number => Enumerable.Repeat(Int(e, key), DownBlockTypes.Length).ToArray(),
        JsonValueKind.Array => e.EnumerateArray().Select(x => Int(x, key)).ToArray() is { } a && a.Length == DownBlockTypes.Length
            ? a : throw new EllaException($"UNet config: {key} must have one value per down block ({DownBlockTypes.Length})"),
        _ => throw new EllaException($"UNet config: {key} must be an integer or a list"),
    };

    public int[] TransformerLayers() => TransformerLayersPerBlock is { ValueKind: JsonValueKind.Number or JsonValueKind.Array } t
        ? PerBlock(t, "transformer_layers_per_block") : Enumerable.Repeat(1, DownBlockTypes.Length).ToArray();

    /// <summary>Rejects options outside the SD1.x/2.x model this class implements, naming the key.</summary>
    public void Validate(string source)
    {
        void Require(bool ok, string message) { if (!ok) throw new EllaException($"{source}: {message}"); }
        Require(DownBlockTypes != null && UpBlockTypes != null && BlockOutChannels != null, "down_block_types, up_block_types and block_out_channels must be lists");
        Require(BlockOutChannels!.Length > 0, "block_out_channels must not be empty");
        ConfigChecks.Size(source, "in_channels", InChannels);
        ConfigChecks.Size(source, "out_channels", OutChannels);
        ConfigChecks.Size(source, "cross_attention_dim", CrossAttentionDim);
        ConfigChecks.Size(source, "norm_num_groups", NormNumGroups);
        ConfigChecks.Count(source, "layers_per_block", LayersPerBlock);
        foreach (int c in BlockOutChannels!) ConfigChecks.Size(source, "block_out_channels", c);
        Require(DownsamplePadding == 1, $"downsample_padding {DownsamplePadding} is not supported (1, as SD1.x/2.x)");
        Require(ConvInKernel is > 0 and < 32 && ConvOutKernel is > 0 and < 32, "conv_in_kernel and conv_out_kernel must be between 1 and 31");
        Require(double.IsFinite(NormEps) && NormEps > 0, $"norm_eps must be a positive number, got {NormEps}");
        Require(DownBlockTypes!.All(t => t != null) && UpBlockTypes!.All(t => t != null), "block types must be strings");
        Require(DownBlockTypes!.Length == BlockOutChannels!.Length && UpBlockTypes!.Length == BlockOutChannels.Length,
            "down_block_types, up_block_types and block_out_channels must have the same length");
        foreach (var t in DownBlockTypes) Require(t is "CrossAttnDownBlock2D" or "DownBlock2D", $"down block type '{t}' is not supported (CrossAttnDownBlock2D, DownBlock2D)");
        foreach (var t in UpBlockTypes!) Require(t is "CrossAttnUpBlock2D" or "UpBlock2D", $"up block type '{t}' is not supported (CrossAttnUpBlock2D, UpBlock2D)");
        Require(MidBlockType is "UNetMidBlock2DCrossAttn", $"mid_block_type '{MidBlockType}' is not supported (UNetMidBlock2DCrossAttn)");
        Require(OnlyCrossAttention is null or { ValueKind: JsonValueKind.False or JsonValueKind.Null }, "only_cross_attention must be false");
        Require(!DualCrossAttention, "dual_cross_attention is not supported");
        Require(ClassEmbedType == null && NumClassEmbeds == null, "class embeddings are not supported");
        Require(AdditionEmbedType == null, $"addition_embed_type '{AdditionEmbedType}' is not supported (SDXL)");
        Require(ResnetTimeScaleShift == "default", $"resnet_time_scale_shift '{ResnetTimeScaleShift}' is not supported");
        Require(TimeEmbeddingType == "positional", $"time_embedding_type '{TimeEmbeddingType}' is not supported");
        Require(TimeCondProjDim == null && TimestepPostAct == null && TimeEmbeddingActFn == null, "time_cond_proj_dim / timestep_post_act / time_embedding_act_fn are not supported");
        Require(EncoderHidDim == null, "encoder_hid_dim is not supported");
        Require(AttentionType == "default", $"attention_type '{AttentionType}' is not supported");
        Require(CrossAttentionNorm == null, "cross_attention_norm is not supported");
        Require(ActFn == "silu", $"act_fn '{ActFn}' is not supported (silu)");
        Require(ConvInKernel % 2 == 1 && ConvOutKernel % 2 == 1, "conv kernels must be odd");
        int[] heads, layers;
        try { heads = HeadsPerBlock(); layers = TransformerLayers(); }
        catch (EllaException e) { throw new EllaException($"{source}: {e.Message.Replace("UNet config: ", "")}", e); }
        foreach (int l in layers) ConfigChecks.Count(source, "transformer_layers_per_block", l);
        for (int i = 0; i < heads.Length; i++)
            Require(heads[i] > 0 && BlockOutChannels[i] % heads[i] == 0, $"block {i}: {BlockOutChannels[i]} channels are not divisible by {heads[i]} heads");
        foreach (int c in BlockOutChannels) Require(c % NormNumGroups == 0, $"{c} channels are not divisible by norm_num_groups {NormNumGroups}");
    }

    /// <summary>Stable Diffusion 1.5's unet/config.json.</summary>
    public static UNet2DConditionConfig StableDiffusion15() => new()
    {
        SampleSize = 64, CrossAttentionDim = 768, AttentionHeadDim = JsonSerializer.SerializeToElement(8),
    };

    public static UNet2DConditionConfig Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new EllaException($"{file}: UNet config.json not found");
        try
        {
            var cfg = ConfigChecks.Deserialize<UNet2DConditionConfig>(file, File.ReadAllText(file), "UNet config");
            cfg.Validate(file);
            return cfg;
        }
        catch (JsonException e) { throw new EllaException($"{file}: not a valid UNet config ({e.Message})", e); }
    }
}
