namespace Ella.Pipelines;

/// <summary>
/// The Automatic1111-style <c>parameters</c> text that every PNG carries (<c>ella generate</c>, <c>ella serve</c>):
/// prompt, "Negative prompt: …", then "Steps: …, Sampler: …, CFG scale: …, Seed: …, Size: …, Model: …".
/// </summary>
public static class GenerationParameters
{
    public static string Text(EllaPipeline pipeline, GenerationRequest r, GenerationResult result, string prompt, int batchPos, string dtype)
    {
        var items = new List<string>
        {
            $"Steps: {r.Steps}", $"Sampler: {result.SchedulerName}", $"CFG scale: {r.GuidanceScale}", $"Seed: {result.Seed}",
            $"Size: {r.Width}x{r.Height}", $"Model: {pipeline.StableDiffusion.Name}",
        };
        if (GenerationModes.UsesElla(r.Mode))
        {
            if (pipeline.EllaPath != null) items.Add($"ELLA: {Path.GetFileNameWithoutExtension(pipeline.EllaPath)}");
            if (pipeline.T5Path != null) items.Add($"T5: {Path.GetFileName(Path.GetFullPath(pipeline.T5Path).TrimEnd('/'))}");
            items.Add($"Token length: {(r.TokenLength == Ella.Text.TokenLength.Fixed ? $"fixed {r.MaxLength}" : "flexible")}");
        }
        items.Add($"Mode: {GenerationModes.Name(r.Mode)}");
        if (result.Images.shape[0] > 1) items.Add($"Batch size: {result.Images.shape[0]}, Batch pos: {batchPos}");
        items.Add($"Dtype: {dtype}");
        items.Add("Version: EllaSharp");
        return $"{prompt}\nNegative prompt: {r.NegativePrompt}\n{string.Join(", ", items)}";
    }
}
