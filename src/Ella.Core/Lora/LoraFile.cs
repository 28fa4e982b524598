using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Lora;

/// <summary>A LoRA to apply: its file and multiplier (A1111's weight).</summary>
public sealed record LoraSpec(string Path, double Multiplier = 1.0)
{
    /// <summary>Parses the CLI form <c>FILE[:multiplier]</c>.</summary>
    public static LoraSpec Parse(string text)
    {
        int colon = text.LastIndexOf(':');
        if (colon > 0 && double.TryParse(text[(colon + 1)..], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double m))
            return new LoraSpec(text[..colon], m);
        return new LoraSpec(text);
    }
}

/// <summary>Which model a LoRA module belongs to.</summary>
public enum LoraTarget { UNet, TextEncoder }

/// <summary>One low-rank update: ΔW = scale · up · down, for the parameter <c>{Module}.weight</c> of <see cref="Target"/>.</summary>
/// <param name="Module">the module path with underscores for kohya keys (<c>down_blocks_0_…_to_k</c>) or dots for PEFT keys</param>
/// <param name="Alpha">kohya's alpha (scale = alpha / rank), or null for scale 1</param>
public sealed record LoraModule(string Key, LoraTarget Target, string Module, bool KohyaNames, string UpName, string DownName, float? Alpha);

/// <summary>
/// Reads the two common LoRA layouts from a safetensors file: kohya / Automatic1111 (<c>lora_unet_…</c>,
/// <c>lora_te_…</c> with <c>.lora_down.weight</c>, <c>.lora_up.weight</c>, <c>.alpha</c>; LoCon convolutions included)
/// and diffusers / PEFT (<c>unet.….lora_A.weight</c> / <c>lora_B.weight</c>, <c>text_encoder.…</c>; scale 1 unless an
/// <c>.alpha</c> is stored). Keys of neither layout are reported as unknown.
/// </summary>
public sealed class LoraFile : IDisposable
{
    public string Path { get; }
    public ITensorSource Source { get; }
    public IReadOnlyList<LoraModule> Modules { get; }
    /// <summary>Keys that belong to no recognised LoRA module.</summary>
    public IReadOnlyList<string> UnknownKeys { get; }

    LoraFile(string path, ITensorSource source, List<LoraModule> modules, List<string> unknown)
    {
        Path = path;
        Source = source;
        Modules = modules;
        UnknownKeys = unknown;
    }

    public static LoraFile Open(string path)
    {
        if (!File.Exists(path)) throw new EllaException($"{path}: LoRA file not found");
        var source = Checkpoint.Open(path);
        var modules = new List<LoraModule>();
        var used = new HashSet<string>();
        foreach (var name in source.Names)
        {
            LoraModule? m = null;
            if (name.EndsWith(".lora_down.weight"))
            {
                string key = name[..^".lora_down.weight".Length];
                (LoraTarget, string)? t = key.StartsWith("lora_unet_") ? (LoraTarget.UNet, key["lora_unet_".Length..])
                    : key.StartsWith("lora_te_") ? (LoraTarget.TextEncoder, key["lora_te_".Length..]) : null;
                if (t is { } target && source.Contains(key + ".lora_up.weight"))
                    m = new LoraModule(key, target.Item1, target.Item2, true, key + ".lora_up.weight", name, Alpha(source, key + ".alpha"));
            }
            else if (name.EndsWith(".lora_A.weight"))
            {
                string key = name[..^".lora_A.weight".Length];
                (LoraTarget, string)? t = key.StartsWith("unet.") ? (LoraTarget.UNet, key["unet.".Length..])
                    : key.StartsWith("text_encoder.") ? (LoraTarget.TextEncoder, key["text_encoder.".Length..]) : null;
                if (t is { } target && source.Contains(key + ".lora_B.weight"))
                    m = new LoraModule(key, target.Item1, target.Item2, false, key + ".lora_B.weight", name, Alpha(source, key + ".alpha"));
            }
            if (m == null) continue;
            modules.Add(m);
            used.Add(m.UpName);
            used.Add(m.DownName);
            used.Add(m.Key + ".alpha");
        }
        var unknown = source.Names.Where(n => !used.Contains(n)).ToList();
        if (modules.Count == 0)
        {
            source.Dispose();
            throw new EllaException($"{path}: not a LoRA file (no kohya lora_up/lora_down or PEFT lora_A/lora_B pairs)");
        }
        return new LoraFile(path, source, modules, unknown);
    }

    static float? Alpha(ITensorSource source, string name)
    {
        if (!source.Contains(name)) return null;
        using var t = source.Read(name, ScalarType.Float32);
        return t.item<float>();
    }

    /// <summary>Adds scale · up · down to <paramref name="weight"/> in place: one fused addmm on a contiguous float32 or
    /// bfloat16 CPU weight (no temporary product; bf16 as diffusers fuses a bf16 model: the matmul in the weight's dtype
    /// with float32 accumulation, one rounding of the sum), else the float32 delta converted to the weight's dtype.</summary>
    public void AddTo(LoraModule m, Tensor weight, double multiplier)
    {
        using var scope = NewDisposeScope();
        if (weight.dtype is ScalarType.Float32 or ScalarType.BFloat16 && weight.is_contiguous() && weight.device_type == TorchSharp.DeviceType.CPU)
        {
            var up = Source.Read(m.UpName, weight.dtype);
            var down = Source.Read(m.DownName, weight.dtype);
            var up2 = up.dim() == 4 ? up[.., .., 0, 0] : up;
            var down2 = down.flatten(1);
            if (up2.shape[0] * down2.shape[1] != weight.numel() || up2.shape[0] != weight.shape[0])
                throw new EllaException($"{Path}: {m.Key}: LoRA shape [{string.Join(", ", up.shape)}]·[{string.Join(", ", down.shape)}] does not fit the weight [{string.Join(", ", weight.shape)}]");
            double scale = multiplier * (m.Alpha is { } a ? a / down.shape[0] : 1.0);
            weight.view(weight.shape[0], -1).addmm_(up2, down2, beta: 1, alpha: (float)scale);
            return;
        }
        weight.add_(Delta(m, weight.shape, multiplier).to(weight.device).to_type(weight.dtype));
    }

    /// <summary>scale · up · down in float32, reshaped to <paramref name="shape"/> (linear: [out, in]; conv: [out, in, k, k]).</summary>
    public Tensor Delta(LoraModule m, long[] shape, double multiplier)
    {
        using var scope = NewDisposeScope();
        var up = Source.Read(m.UpName, ScalarType.Float32);
        var down = Source.Read(m.DownName, ScalarType.Float32);
        long rank = down.shape[0];
        double scale = multiplier * (m.Alpha is { } a ? a / rank : 1.0);
        var up2 = up.dim() == 4 ? up[.., .., 0, 0] : up;
        var product = up2.matmul(down.flatten(1));
        if (product.numel() != shape.Aggregate(1L, (x, y) => x * y))
            throw new EllaException($"{Path}: {m.Key}: LoRA shape [{string.Join(", ", up.shape)}]·[{string.Join(", ", down.shape)}] does not fit the weight [{string.Join(", ", shape)}]");
        return (product.reshape(shape) * scale).MoveToOuterDisposeScope();
    }

    public void Dispose() => Source.Dispose();
}
