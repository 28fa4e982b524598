using System.CommandLine;
using Ella.Imaging;
using Ella.Lora;
using Ella.Pipelines;
using Ella.Pipelines.ControlNet;
using Ella.Pipelines.Img2Img;

namespace Ella.Cli.Commands;

/// <summary>The community tools' options, shared by <c>generate</c> and <c>compare</c>: img2img, inpainting,
/// ControlNet, LoRA and per-image seeds.</summary>
public sealed class ToolCliOptions
{
    public readonly Option<string?> InitImage = new("--init-image") { Description = "img2img / inpainting: start from this image (PNG or JPEG); --width/--height default to its size rounded down to a multiple of 8" };
    public readonly Option<double?> Strength = new("--strength") { Description = "How much of the init image is repainted, in (0, 1] (default 0.8 for img2img, 1.0 for inpainting)" };
    public readonly Option<string?> Mask = new("--mask") { Description = "Inpainting mask, the init image's size: white = repaint, black = keep" };
    public readonly Option<string[]> ControlNet = new("--controlnet") { Description = "ControlNet: diffusers ControlNetModel folder or .safetensors (repeatable)", AllowMultipleArgumentsPerToken = false };
    public readonly Option<string[]> ControlImage = new("--control-image") { Description = "Control image, one per --controlnet" };
    public readonly Option<double[]> ControlScale = new("--control-scale") { Description = "conditioning scale per ControlNet, or one for all (default 1.0)" };
    public readonly Option<double[]> ControlStart = new("--control-start") { Description = "fraction of the steps where each ControlNet starts (default 0)" };
    public readonly Option<double[]> ControlEnd = new("--control-end") { Description = "fraction of the steps where each ControlNet stops (default 1)" };
    public readonly Option<string[]> ControlPreprocess = new("--control-preprocess") { Description = "canny | none, per ControlNet or one for all (default none)" };
    public readonly Option<string[]> Lora = new("--lora") { Description = "LoRA FILE[:multiplier] (kohya/A1111 or diffusers/PEFT safetensors; repeatable)" };
    public readonly Option<string?> LoraDir = new("--lora-dir") { Description = "Folder where <lora:name:weight> prompt tags are looked up (name.safetensors)" };
    public readonly Option<string> SeedMode = new("--seed-mode") { Description = "batch (one generator for the whole batch) | per-image (image i uses seed+i)", DefaultValueFactory = _ => "batch" };

    public ToolCliOptions()
    {
        SeedMode.AcceptOnlyFromAmong("batch", "per-image");
    }

    public void AddTo(Command command)
    {
        foreach (var o in new Option[] { InitImage, Strength, Mask, ControlNet, ControlImage, ControlScale, ControlStart, ControlEnd, ControlPreprocess, Lora, LoraDir, SeedMode })
            command.Options.Add(o);
    }

    static RgbImage LoadImage(string path, string flag)
    {
        if (!File.Exists(path)) throw new EllaException($"{flag} {path}: file not found");
        return RgbImage.Load(path);
    }

    /// <summary>The request with the tools' settings (and the init image's size when --width/--height are not given).</summary>
    public GenerationRequest Apply(ParseResult p, GenerationRequest r, PipelineCliOptions o)
    {
        var init = p.GetValue(InitImage) is { } i ? LoadImage(i, "--init-image") : null;
        var mask = p.GetValue(Mask) is { } m ? LoadImage(m, "--mask") : null;
        if (mask != null && init == null) throw new EllaException("--mask needs --init-image");
        if (p.GetValue(Strength) != null && init == null) throw new EllaException("--strength needs --init-image");
        int width = r.Width, height = r.Height;
        if (init != null)
        {
            var (w, h) = ImageInput.DefaultSize(init, 8);
            if (p.GetResult(o.Width) is null or { Implicit: true }) width = w;
            if (p.GetResult(o.Height) is null or { Implicit: true }) height = h;
            if (width <= 0 || height <= 0) throw new EllaException($"--init-image is {init.Width}×{init.Height}: too small (at least 8×8)");
        }
        return r with
        {
            InitImage = init, Mask = mask, Strength = p.GetValue(Strength), Width = width, Height = height,
            ControlNets = ControlNets(p), Loras = (p.GetValue(Lora) ?? []).Select(LoraSpec.Parse).Select(CheckLora).ToList(),
            LoraDirectory = p.GetValue(LoraDir), SeedMode = p.GetValue(SeedMode) == "per-image" ? Pipelines.SeedMode.PerImage : Pipelines.SeedMode.Batch,
        };
    }

    static LoraSpec CheckLora(LoraSpec s) => File.Exists(s.Path) ? s : throw new EllaException($"--lora {s.Path}: file not found");

    List<ControlNetUnit> ControlNets(ParseResult p)
    {
        var nets = p.GetValue(ControlNet) ?? [];
        var images = p.GetValue(ControlImage) ?? [];
        if (nets.Length != images.Length)
            throw new EllaException($"{nets.Length} --controlnet but {images.Length} --control-image: give one control image per ControlNet");
        T Pick<T>(T[]? values, int k, T fallback, string flag) => values is null or { Length: 0 } ? fallback
            : values.Length == 1 ? values[0] : values.Length == nets.Length ? values[k]
            : throw new EllaException($"{flag}: give one value, or one per --controlnet ({nets.Length}), not {values.Length}");
        var units = new List<ControlNetUnit>();
        for (int k = 0; k < nets.Length; k++)
        {
            if (!Directory.Exists(nets[k]) && !File.Exists(nets[k])) throw new EllaException($"--controlnet {nets[k]}: no such folder or file");
            string pre = Pick(p.GetValue(ControlPreprocess), k, "none", "--control-preprocess");
            var image = ControlPreprocessor.Apply(pre, LoadImage(images[k], "--control-image"));
            var unit = new ControlNetUnit(nets[k], image, Pick(p.GetValue(ControlScale), k, 1.0, "--control-scale"),
                Pick(p.GetValue(ControlStart), k, 0.0, "--control-start"), Pick(p.GetValue(ControlEnd), k, 1.0, "--control-end"));
            unit.Validate();
            units.Add(unit);
        }
        return units;
    }

    /// <summary>A1111-style parameter entries for the tools in use.</summary>
    public static IEnumerable<string> Parameters(GenerationRequest r) => GenerationParameters.ToolItems(r);
}
