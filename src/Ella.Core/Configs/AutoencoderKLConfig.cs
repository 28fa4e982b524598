using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ella.Configs;

/// <summary>diffusers' <c>AutoencoderKL</c> config; JSON names are the config.json keys.</summary>
public sealed class AutoencoderKLConfig
{
    [JsonPropertyName("in_channels")] public int InChannels { get; set; } = 3;
    [JsonPropertyName("out_channels")] public int OutChannels { get; set; } = 3;
    [JsonPropertyName("down_block_types")] public string[] DownBlockTypes { get; set; } = ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"];
    [JsonPropertyName("up_block_types")] public string[] UpBlockTypes { get; set; } = ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"];
    [JsonPropertyName("block_out_channels")] public int[] BlockOutChannels { get; set; } = [128, 256, 512, 512];
    [JsonPropertyName("layers_per_block")] public int LayersPerBlock { get; set; } = 2;
    [JsonPropertyName("act_fn")] public string ActFn { get; set; } = "silu";
    [JsonPropertyName("latent_channels")] public int LatentChannels { get; set; } = 4;
    [JsonPropertyName("norm_num_groups")] public int NormNumGroups { get; set; } = 32;
    [JsonPropertyName("sample_size")] public int SampleSize { get; set; } = 512;
    [JsonPropertyName("scaling_factor")] public double ScalingFactor { get; set; } = 0.18215;
    [JsonPropertyName("shift_factor")] public double? ShiftFactor { get; set; }
    [JsonPropertyName("force_upcast")] public bool ForceUpcast { get; set; } = true;
    [JsonPropertyName("mid_block_add_attention")] public bool MidBlockAddAttention { get; set; } = true;
    [JsonPropertyName("use_quant_conv")] public bool UseQuantConv { get; set; } = true;
    [JsonPropertyName("use_post_quant_conv")] public bool UsePostQuantConv { get; set; } = true;

    /// <summary>Pixels per latent along each side: 2^(number of down-samplers).</summary>
    [JsonIgnore] public int DownscaleFactor => 1 << (BlockOutChannels.Length - 1);

    public void Validate(string source)
    {
        void Require(bool ok, string m) { if (!ok) throw new EllaException($"{source}: {m}"); }
        Require(DownBlockTypes != null && UpBlockTypes != null && BlockOutChannels != null, "down_block_types, up_block_types and block_out_channels must be lists");
        Require(BlockOutChannels!.Length is > 0 and <= 16, "block_out_channels must have 1 to 16 entries");
        ConfigChecks.Size(source, "in_channels", InChannels);
        ConfigChecks.Size(source, "out_channels", OutChannels);
        ConfigChecks.Size(source, "latent_channels", LatentChannels);
        ConfigChecks.Size(source, "norm_num_groups", NormNumGroups);
        ConfigChecks.Count(source, "layers_per_block", LayersPerBlock);
        foreach (int c in BlockOutChannels!) ConfigChecks.Size(source, "block_out_channels", c);
        Require(double.IsFinite(ScalingFactor) && ScalingFactor != 0, $"scaling_factor must be a finite, non-zero number, got {ScalingFactor}");
        Require(ShiftFactor is null || double.IsFinite(ShiftFactor.Value), "shift_factor must be finite");
        Require(ActFn != null && DownBlockTypes!.All(t => t != null) && UpBlockTypes!.All(t => t != null), "act_fn and block types must be strings");
        Require(DownBlockTypes!.Length == BlockOutChannels!.Length && UpBlockTypes!.Length == BlockOutChannels.Length,
            "down_block_types, up_block_types and block_out_channels must have the same length");
        foreach (var t in DownBlockTypes) Require(t == "DownEncoderBlock2D", $"down block type '{t}' is not supported (DownEncoderBlock2D)");
        foreach (var t in UpBlockTypes!) Require(t == "UpDecoderBlock2D", $"up block type '{t}' is not supported (UpDecoderBlock2D)");
        Require(ActFn == "silu", $"act_fn '{ActFn}' is not supported (silu)");
        foreach (int c in BlockOutChannels) Require(c % NormNumGroups == 0, $"{c} channels are not divisible by norm_num_groups {NormNumGroups}");
    }

    /// <summary>Stable Diffusion 1.5's vae/config.json.</summary>
    public static AutoencoderKLConfig StableDiffusion15() => new();

    public static AutoencoderKLConfig Load(string path)
    {
        string file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new EllaException($"{file}: VAE config.json not found");
        try
        {
            var cfg = ConfigChecks.Deserialize<AutoencoderKLConfig>(file, File.ReadAllText(file), "VAE config");
            cfg.Validate(file);
            return cfg;
        }
        catch (JsonException e) { throw new EllaException($"{file}: not a valid VAE config ({e.Message})", e); }
    }
}
