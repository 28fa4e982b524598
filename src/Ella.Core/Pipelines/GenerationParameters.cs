using Ella.Hardware;
using Ella.TextEncoders;

namespace Ella.Pipelines;

/// <summary>
/// The Automatic1111-style <c>parameters</c> text that every PNG carries (<c>ella generate</c>, <c>ella serve</c>):
/// prompt, "Negative prompt: …", then "Steps: …, Sampler: …, CFG scale: …, Seed: …, Size: …, Model: …".
/// </summary>
public static class GenerationParameters
{
    /// <param name="upscale">the saved image is this many times the generated size (nearest neighbour)</param>
    public static string Text(EllaPipeline pipeline, GenerationRequest r, GenerationResult result, string prompt, int batchPos, string dtype, int upscale = 1)
    {
        if (dtype == "auto") dtype = DTypeChoice.Name(DTypeChoice.Auto(pipeline.StableDiffusion.Unet.parameters().First().device));
        var items = new List<string>
        {
            $"Steps: {r.Steps}", $"Sampler: {result.SchedulerName}", $"CFG scale: {r.GuidanceScale}", $"Seed: {(r.SeedMode == SeedMode.PerImage ? result.Seed + batchPos : result.Seed)}",
            $"Size: {r.Width}x{r.Height}", $"Model: {pipeline.StableDiffusion.Name}",
        };
        if (GenerationModes.UsesElla(r.Mode))
        {
            if (pipeline.EllaPath != null) items.Add($"ELLA: {Path.GetFileNameWithoutExtension(pipeline.EllaPath)}");
            if (pipeline.T5Path != null) items.Add($"T5: {Path.GetFileName(Path.GetFullPath(pipeline.T5Path).TrimEnd('/'))}");
            if (pipeline.TextEncoder != TextEncoderKind.T5) items.Add($"Text encoder: {TextEncoderKinds.Name(pipeline.TextEncoder)}");
            items.Add($"Token length: {(r.TokenLength == Ella.Text.TokenLength.Fixed ? $"fixed {r.MaxLength}" : "flexible")}");
        }
        items.Add($"Mode: {GenerationModes.Name(r.Mode)}");
        items.AddRange(ToolItems(r));
        if (result.Images.shape[0] > 1) items.Add($"Batch size: {result.Images.shape[0]}, Batch pos: {batchPos}");
        if (upscale > 1) items.Add($"Upscale: {upscale}x nearest");
        items.Add($"Dtype: {dtype}");
        items.Add("Version: EllaSharp");
        return $"{prompt}\nNegative prompt: {r.NegativePrompt}\n{string.Join(", ", items)}";
    }

    /// <summary>The community tools a request used (img2img strength, mask, ControlNets, LoRAs, seed mode).</summary>
    public static IEnumerable<string> ToolItems(GenerationRequest r)
    {
        if (r.InitImage != null) yield return $"Denoising strength: {r.Strength ?? (r.Mask != null ? 1.0 : 0.8)}";
        if (r.Mask != null) yield return "Inpaint: mask";
        foreach (var c in r.ControlNets) yield return $"ControlNet: {Path.GetFileName(Path.GetFullPath(c.Path).TrimEnd('/'))} (scale {c.Scale}, {c.Start}-{c.End})";
        foreach (var l in r.Loras) yield return $"Lora: {Path.GetFileNameWithoutExtension(l.Path)}:{l.Multiplier}";
        if (r.SeedMode == SeedMode.PerImage) yield return "Seed mode: per-image";
    }
}
