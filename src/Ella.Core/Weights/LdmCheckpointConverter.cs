using System.Text.Json;
using System.Text.RegularExpressions;
using Ella.Configs;
using TorchSharp;

namespace Ella.Weights;

/// <summary>
/// Original (LDM/CompVis) single-file Stable Diffusion checkpoints, converted on load to the diffusers layout:
/// <c>model.diffusion_model.*</c> → UNet, <c>first_stage_model.*</c> → VAE (mid-block attention 1×1-conv weights become
/// linear weights), <c>cond_stage_model.transformer.*</c> → CLIP text encoder. Configs are derived from tensor shapes.
/// </summary>
public static class LdmCheckpointConverter
{
    public const string UNetPrefix = "model.diffusion_model.";
    public const string VaePrefix = "first_stage_model.";
    public const string ClipPrefix = "cond_stage_model.transformer.";

    public static bool IsLdm(ITensorSource source) => Checkpoint.IsSingleFileStableDiffusion(source);

    // ---- UNet ----------------------------------------------------------------------------------------------------

    static readonly (string From, string To)[] ResnetNames =
    [
        ("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
        ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."),
    ];

    /// <summary>The diffusers name of an LDM UNet key (without <see cref="UNetPrefix"/>), or null if it is not a UNet weight.</summary>
    public static string? UNetKey(string ldm, int layersPerBlock, Func<string, bool> isAttention)
    {
        static string Resnet(string rest) => ResnetNames.Aggregate(rest, (s, r) => s.StartsWith(r.From) ? r.To + s[r.From.Length..] : s);
        if (ldm.StartsWith("time_embed.0.")) return "time_embedding.linear_1." + ldm["time_embed.0.".Length..];
        if (ldm.StartsWith("time_embed.2.")) return "time_embedding.linear_2." + ldm["time_embed.2.".Length..];
        if (ldm.StartsWith("input_blocks.0.0.")) return "conv_in." + ldm["input_blocks.0.0.".Length..];
        if (ldm.StartsWith("out.0.")) return "conv_norm_out." + ldm["out.0.".Length..];
        if (ldm.StartsWith("out.2.")) return "conv_out." + ldm["out.2.".Length..];
        var m = Regex.Match(ldm, @"^input_blocks\.(\d+)\.(\d+)\.(.*)$");
        if (m.Success)
        {
            int i = int.Parse(m.Groups[1].Value), part = int.Parse(m.Groups[2].Value);
            string rest = m.Groups[3].Value;
            int block = (i - 1) / (layersPerBlock + 1), layer = (i - 1) % (layersPerBlock + 1);
            if (layer == layersPerBlock) return rest.StartsWith("op.") ? $"down_blocks.{block}.downsamplers.0.conv.{rest[3..]}" : null;
            return part == 0 ? $"down_blocks.{block}.resnets.{layer}.{Resnet(rest)}" : $"down_blocks.{block}.attentions.{layer}.{rest}";
        }
        m = Regex.Match(ldm, @"^middle_block\.(\d+)\.(.*)$");
        if (m.Success)
        {
            int part = int.Parse(m.Groups[1].Value);
            string rest = m.Groups[2].Value;
            return part switch
            {
                0 => $"mid_block.resnets.0.{Resnet(rest)}",
                1 => $"mid_block.attentions.0.{rest}",
                2 => $"mid_block.resnets.1.{Resnet(rest)}",
                _ => null,
            };
        }
        m = Regex.Match(ldm, @"^output_blocks\.(\d+)\.(\d+)\.(.*)$");
        if (m.Success)
        {
            int i = int.Parse(m.Groups[1].Value), part = int.Parse(m.Groups[2].Value);
            string rest = m.Groups[3].Value;
            int block = i / (layersPerBlock + 1), layer = i % (layersPerBlock + 1);
            if (part == 0) return $"up_blocks.{block}.resnets.{layer}.{Resnet(rest)}";
            if (part == 1 && isAttention($"output_blocks.{i}.1.")) return $"up_blocks.{block}.attentions.{layer}.{rest}";
            return rest.StartsWith("conv.") ? $"up_blocks.{block}.upsamplers.0.{rest}" : null;
        }
        return null;
    }

    /// <summary>The UNet of a single-file checkpoint: its derived SD1.x/2.x config and a diffusers-named view.</summary>
    public static (UNet2DConditionConfig Config, ITensorSource View) UNet(ITensorSource source)
    {
        var names = source.Names.Where(n => n.StartsWith(UNetPrefix)).Select(n => n[UNetPrefix.Length..]).ToList();
        if (names.Count == 0) throw new CheckpointException($"{source.Path}: no UNet weights ({UNetPrefix}*)");
        var nameSet = names.ToHashSet();
        long[] Shape(string key) => source.Contains(UNetPrefix + key)
            ? source.GetInfo(UNetPrefix + key).Shape
            : throw new CheckpointException($"{source.Path}: single-file UNet lacks '{UNetPrefix + key}'");

        int inputBlocks = names.Where(n => n.StartsWith("input_blocks.")).Select(n => int.Parse(n.Split('.')[1])).Max() + 1;
        int levels = 0;
        for (int i = 1; i < inputBlocks; i++) if (nameSet.Contains($"input_blocks.{i}.0.op.weight")) levels++;
        levels++; // the last level has no down-sampler
        int layersPerBlock = (inputBlocks - 1 - (levels - 1)) / levels;
        var channels = Enumerable.Range(0, levels).Select(l => (int)Shape($"input_blocks.{1 + l * (layersPerBlock + 1)}.0.out_layers.3.weight")[0]).ToArray();
        var withAttention = Enumerable.Range(0, levels).Select(l => nameSet.Contains($"input_blocks.{1 + l * (layersPerBlock + 1)}.1.proj_in.weight")).ToArray();
        var attnKey = names.First(n => n.EndsWith("transformer_blocks.0.attn2.to_k.weight"));
        int crossDim = (int)Shape(attnKey)[1];
        bool linearProjection = Shape(names.First(n => n.EndsWith(".proj_in.weight"))).Length == 2;
        // SD1.x: 8 heads everywhere; SD2.x (1024-wide context): 64-channel heads.
        var heads = crossDim == 768 ? Enumerable.Repeat(8, levels).ToArray() : channels.Select(c => c / 64).ToArray();
        var config = new UNet2DConditionConfig
        {
            InChannels = (int)Shape("input_blocks.0.0.weight")[1],
            OutChannels = (int)Shape("out.2.weight")[0],
            BlockOutChannels = channels,
            LayersPerBlock = layersPerBlock,
            CrossAttentionDim = crossDim,
            UseLinearProjection = linearProjection,
            AttentionHeadDim = JsonSerializer.SerializeToElement(heads),
            DownBlockTypes = withAttention.Select(a => a ? "CrossAttnDownBlock2D" : "DownBlock2D").ToArray(),
            UpBlockTypes = withAttention.Reverse().Select(a => a ? "CrossAttnUpBlock2D" : "UpBlock2D").ToArray(),
            SampleSize = crossDim == 768 ? 64 : 96,
        };
        config.Validate($"{source.Path} (derived UNet config)");
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var n in names)
        {
            string? key = UNetKey(n, layersPerBlock, prefix => nameSet.Contains(prefix + "proj_in.weight"));
            if (key != null) map[key] = UNetPrefix + n;
        }
        return (config, new KeyMappedTensorSource(source, map));
    }

    // ---- VAE -----------------------------------------------------------------------------------------------------

    static readonly (string From, string To)[] VaeAttentionNames =
        [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")];

    /// <summary>The diffusers name of an LDM VAE key (without <see cref="VaePrefix"/>), with whether its value is reshaped.</summary>
    public static (string Key, bool Reshaped)? VaeKey(string ldm, int levels)
    {
        static string Resnet(string rest) => rest.StartsWith("nin_shortcut.") ? "conv_shortcut." + rest["nin_shortcut.".Length..] : rest;
        string? Mid(string side, string rest, out bool reshaped)
        {
            reshaped = false;
            if (rest.StartsWith("block_1.")) return $"{side}.mid_block.resnets.0.{Resnet(rest[8..])}";
            if (rest.StartsWith("block_2.")) return $"{side}.mid_block.resnets.1.{Resnet(rest[8..])}";
            if (!rest.StartsWith("attn_1.")) return null;
            string a = rest[7..];
            foreach (var (from, to) in VaeAttentionNames)
                if (a.StartsWith(from))
                {
                    reshaped = from != "norm." && a.EndsWith("weight");
                    return $"{side}.mid_block.attentions.0.{to}{a[from.Length..]}";
                }
            return null;
        }
        foreach (var side in new[] { "encoder", "decoder" })
        {
            if (!ldm.StartsWith(side + ".")) continue;
            string rest = ldm[(side.Length + 1)..];
            if (rest.StartsWith("conv_in.") || rest.StartsWith("conv_out.")) return ($"{side}.{rest}", false);
            if (rest.StartsWith("norm_out.")) return ($"{side}.conv_norm_out.{rest[9..]}", false);
            if (rest.StartsWith("mid."))
            {
                string? k = Mid(side, rest[4..], out bool reshaped);
                return k == null ? null : (k, reshaped);
            }
            var m = Regex.Match(rest, @"^(down|up)\.(\d+)\.(block|downsample|upsample)\.(.*)$");
            if (!m.Success) return null;
            int level = int.Parse(m.Groups[2].Value);
            int block = m.Groups[1].Value == "up" ? levels - 1 - level : level;
            string kind = m.Groups[1].Value == "up" ? "up_blocks" : "down_blocks";
            string tail = m.Groups[4].Value;
            return m.Groups[3].Value switch
            {
                "block" => ($"{side}.{kind}.{block}.resnets.{tail[..(tail.IndexOf('.') + 1)]}{Resnet(tail[(tail.IndexOf('.') + 1)..])}", false),
                "downsample" => ($"{side}.{kind}.{block}.downsamplers.0.{tail}", false),
                _ => ($"{side}.{kind}.{block}.upsamplers.0.{tail}", false),
            };
        }
        if (ldm.StartsWith("quant_conv.") || ldm.StartsWith("post_quant_conv.")) return (ldm, false);
        return null;
    }

    /// <summary>The VAE of a single-file checkpoint: derived config and a diffusers-named view (1×1 conv → linear).</summary>
    public static (AutoencoderKLConfig Config, ITensorSource View) Vae(ITensorSource source)
    {
        var names = source.Names.Where(n => n.StartsWith(VaePrefix)).Select(n => n[VaePrefix.Length..]).ToList();
        if (names.Count == 0) throw new CheckpointException($"{source.Path}: no VAE weights ({VaePrefix}*); pass a separate VAE");
        int levels = names.Where(n => n.StartsWith("encoder.down.")).Select(n => int.Parse(n.Split('.')[2])).Max() + 1;
        int layers = names.Where(n => n.StartsWith("encoder.down.0.block.")).Select(n => int.Parse(n.Split('.')[4])).Max() + 1;
        long[] Shape(string key) => source.GetInfo(VaePrefix + key).Shape;
        var config = new AutoencoderKLConfig
        {
            InChannels = (int)Shape("encoder.conv_in.weight")[1],
            OutChannels = (int)Shape("decoder.conv_out.weight")[0],
            BlockOutChannels = Enumerable.Range(0, levels).Select(l => (int)Shape($"encoder.down.{l}.block.0.conv1.weight")[0]).ToArray(),
            DownBlockTypes = Enumerable.Repeat("DownEncoderBlock2D", levels).ToArray(),
            UpBlockTypes = Enumerable.Repeat("UpDecoderBlock2D", levels).ToArray(),
            LayersPerBlock = layers,
            LatentChannels = (int)Shape("decoder.conv_in.weight")[1],
        };
        config.Validate($"{source.Path} (derived VAE config)");
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        var transforms = new Dictionary<string, (Func<torch.Tensor, torch.Tensor>, long[])>();
        foreach (var n in names)
        {
            var converted = VaeKey(n, levels);
            if (converted is not { } c) continue;
            map[c.Key] = VaePrefix + n;
            var shape = Shape(n);
            if (c.Reshaped && shape.Length == 4)
                transforms[c.Key] = (t => t.reshape(shape[0], shape[1]), [shape[0], shape[1]]);
        }
        return (config, new KeyMappedTensorSource(source, map, transforms));
    }

    // ---- CLIP ----------------------------------------------------------------------------------------------------

    /// <summary>The CLIP text encoder of a single-file checkpoint in transformers' names (text_model.*), or null.</summary>
    public static ITensorSource? Clip(ITensorSource source)
    {
        var names = source.Names.Where(n => n.StartsWith(ClipPrefix)).ToList();
        if (names.Count == 0) return null;
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var n in names)
        {
            string rest = n[ClipPrefix.Length..];
            map[rest.StartsWith("text_model.") ? rest : "text_model." + rest] = n;
        }
        return new KeyMappedTensorSource(source, map);
    }
}
