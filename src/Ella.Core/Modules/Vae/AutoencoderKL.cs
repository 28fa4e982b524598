using Ella.Configs;
using Ella.Modules.Common;
using Ella.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Modules.Vae;

/// <summary>The latent distribution an encode returns: mean and log-variance (clamped to [−30, 20]).</summary>
public sealed class DiagonalGaussian : IDisposable
{
    public required Tensor Mean { get; init; }
    public required Tensor LogVar { get; init; }
    public Tensor Std() => (LogVar * 0.5).exp();
    public Tensor Var() => LogVar.exp();

    /// <summary>mean + std·ε with ε drawn from <paramref name="generator"/> on the CPU.</summary>
    public Tensor Sample(Generator? generator = null)
    {
        using var eps = randn(Mean.shape, dtype: Mean.dtype, generator: generator);
        using var std = Std();
        return Mean + std * eps.to(Mean.device);
    }

    public void Dispose()
    {
        Mean.Dispose();
        LogVar.Dispose();
    }
}

/// <summary>
/// diffusers' <c>AutoencoderKL</c> (SD's VAE): encoder → quant_conv → Gaussian; post_quant_conv → decoder. Decode takes
/// raw latents: the pipeline divides by <see cref="AutoencoderKLConfig.ScalingFactor"/> first.
/// </summary>
public sealed class AutoencoderKL : nn.Module<Tensor, Tensor>
{
    readonly VaeEncoder encoder;
    readonly VaeDecoder decoder;
    readonly Conv2d? quant_conv;
    readonly Conv2d? post_quant_conv;

    public AutoencoderKLConfig Config { get; }

    public AutoencoderKL(AutoencoderKLConfig config) : base(nameof(AutoencoderKL))
    {
        config.Validate("VAE config");
        Config = config;
        encoder = new VaeEncoder(config);
        decoder = new VaeDecoder(config);
        if (config.UseQuantConv) quant_conv = Layers.Conv2d(2 * config.LatentChannels, 2 * config.LatentChannels, 1);
        if (config.UsePostQuantConv) post_quant_conv = Layers.Conv2d(config.LatentChannels, config.LatentChannels, 1);
        RegisterComponents();
    }

    /// <summary>Decode: [B, latent, h, w] → [B, out, h·f, w·f] in about [−1, 1].</summary>
    public override Tensor forward(Tensor latents) => Decode(latents);

    public Tensor Decode(Tensor latents)
    {
        using var scope = NewDisposeScope();
        var z = post_quant_conv is null ? latents : post_quant_conv.forward(latents);
        return decoder.forward(z).MoveToOuterDisposeScope();
    }

    /// <summary>quant_conv output [B, 2·latent, h, w]: mean then log-variance (unclamped).</summary>
    public Tensor EncodeMoments(Tensor image)
    {
        using var scope = NewDisposeScope();
        var h = encoder.forward(image);
        return (quant_conv is null ? h : quant_conv.forward(h)).MoveToOuterDisposeScope();
    }

    public DiagonalGaussian Encode(Tensor image)
    {
        using var scope = NewDisposeScope();
        var parts = EncodeMoments(image).chunk(2, 1);
        return new DiagonalGaussian
        {
            Mean = parts[0].contiguous().DetachFromDisposeScope(),
            LogVar = parts[1].clamp(-30.0, 20.0).DetachFromDisposeScope(),
        };
    }

    /// <summary>Legacy attention names of older diffusers exports (query/key/value/proj_attn) → current names.</summary>
    public static ITensorSource DiffusersView(ITensorSource source)
    {
        var legacy = new Dictionary<string, string> { [".query."] = ".to_q.", [".key."] = ".to_k.", [".value."] = ".to_v.", [".proj_attn."] = ".to_out.0." };
        if (!source.Names.Any(n => n.Contains("mid_block.attentions.0.query."))) return new KeyMappedTensorSource(source, source.Names.ToDictionary(n => n));
        var map = new Dictionary<string, string>();
        foreach (var name in source.Names)
        {
            string exposed = name;
            if (name.Contains("mid_block.attentions."))
                foreach (var (from, to) in legacy) exposed = exposed.Replace(from, to);
            map[exposed] = name;
        }
        return new KeyMappedTensorSource(source, map);
    }

    /// <summary>Loads a diffusers <c>vae/</c> folder (config.json + diffusion_pytorch_model.safetensors).</summary>
    public static AutoencoderKL FromPretrained(string folder, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(folder)) throw new EllaException($"{folder}: VAE folder not found");
        var config = AutoencoderKLConfig.Load(folder);
        using var source = Checkpoint.Open(folder);
        using var view = DiffusersView(source);
        return FromSource(config, view, dtype, device);
    }

    public static AutoencoderKL FromSource(AutoencoderKLConfig config, ITensorSource source, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        Pretrained.Load(() => new AutoencoderKL(config), source, dtype, device, "VAE");
}

public sealed class VaeEncoder : nn.Module<Tensor, Tensor>
{
    readonly Conv2d conv_in;
    readonly ModuleList<DownEncoderBlock2D> down_blocks;
    readonly VaeMidBlock mid_block;
    readonly GroupNorm conv_norm_out;
    readonly Conv2d conv_out;

    public VaeEncoder(AutoencoderKLConfig c) : base("Encoder")
    {
        var ch = c.BlockOutChannels;
        conv_in = Layers.Conv2d(c.InChannels, ch[0], 3, padding: 1);
        int output = ch[0];
        var blocks = new List<DownEncoderBlock2D>();
        for (int i = 0; i < ch.Length; i++)
        {
            int input = output;
            output = ch[i];
            blocks.Add(new DownEncoderBlock2D(input, output, c.LayersPerBlock, i < ch.Length - 1, c.NormNumGroups, 1e-6));
        }
        down_blocks = nn.ModuleList(blocks.ToArray());
        mid_block = new VaeMidBlock(ch[^1], c.NormNumGroups, 1e-6, c.MidBlockAddAttention);
        conv_norm_out = Layers.GroupNorm(c.NormNumGroups, ch[^1], 1e-6);
        conv_out = Layers.Conv2d(ch[^1], 2 * c.LatentChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = conv_in.forward(x);
        foreach (var b in down_blocks) h = b.forward(h);
        h = mid_block.forward(h);
        return Layers.OutputConv(conv_out, nn.functional.silu(conv_norm_out.forward(h))).MoveToOuterDisposeScope();
    }
}

public sealed class VaeDecoder : nn.Module<Tensor, Tensor>
{
    // diffusers registers up_blocks before mid_block.
    readonly Conv2d conv_in;
    readonly ModuleList<UpDecoderBlock2D> up_blocks;
    readonly VaeMidBlock mid_block;
    readonly GroupNorm conv_norm_out;
    readonly Conv2d conv_out;

    public VaeDecoder(AutoencoderKLConfig c) : base("Decoder")
    {
        var rch = c.BlockOutChannels.Reverse().ToArray();
        conv_in = Layers.Conv2d(c.LatentChannels, rch[0], 3, padding: 1);
        mid_block = new VaeMidBlock(rch[0], c.NormNumGroups, 1e-6, c.MidBlockAddAttention);
        int output = rch[0];
        var blocks = new List<UpDecoderBlock2D>();
        for (int i = 0; i < rch.Length; i++)
        {
            int prev = output;
            output = rch[i];
            blocks.Add(new UpDecoderBlock2D(prev, output, c.LayersPerBlock + 1, i < rch.Length - 1, c.NormNumGroups, 1e-6));
        }
        up_blocks = nn.ModuleList(blocks.ToArray());
        conv_norm_out = Layers.GroupNorm(c.NormNumGroups, rch[^1], 1e-6);
        conv_out = Layers.Conv2d(rch[^1], c.OutChannels, 3, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor z)
    {
        using var scope = NewDisposeScope();
        var h = conv_in.forward(z);
        h = mid_block.forward(h);
        foreach (var b in up_blocks) h = b.forward(h);
        return Layers.OutputConv(conv_out, nn.functional.silu(conv_norm_out.forward(h))).MoveToOuterDisposeScope();
    }
}
