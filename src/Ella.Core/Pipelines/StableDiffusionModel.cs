using Ella.Configs;
using Ella.Modules.Clip;
using Ella.Modules.UNet;
using Ella.Modules.Vae;
using Ella.Text;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>
/// The SD components of a diffusers folder (unet/, vae/, scheduler/, text_encoder/, tokenizer/) or of a single-file
/// original-layout checkpoint (converted on load; a tokenizer/ folder beside it, or --clip-tokenizer, gives CLIP's vocab).
/// </summary>
public sealed class StableDiffusionModel : IDisposable
{
    public required UNet2DConditionModel Unet { get; init; }
    public required AutoencoderKL Vae { get; init; }
    public required SchedulerConfig SchedulerConfig { get; init; }
    public ClipTextModel? TextEncoder { get; init; }
    public ClipTokenizer? Tokenizer { get; init; }
    /// <summary>A short name for logs and PNG metadata.</summary>
    public required string Name { get; init; }

    public static StableDiffusionModel Load(string path, ScalarType dtype, Device? device, bool withTextEncoder, string? clipTokenizer = null)
    {
        if (Directory.Exists(path)) return LoadFolder(path, dtype, device, withTextEncoder, clipTokenizer);
        return LoadSingleFile(path, dtype, device, withTextEncoder, clipTokenizer);
    }

    static StableDiffusionModel LoadFolder(string folder, ScalarType dtype, Device? device, bool withText, string? clipTokenizer)
    {
        string Sub(string name)
        {
            string p = Path.Combine(folder, name);
            if (!Directory.Exists(p)) throw new EllaException($"{folder}: incomplete Stable Diffusion folder: '{name}/' is missing (a diffusers folder has unet/, vae/, scheduler/, text_encoder/, tokenizer/)");
            return p;
        }
        var unet = UNet2DConditionModel.FromPretrained(Sub("unet"), dtype, device);
        var vae = AutoencoderKL.FromPretrained(Sub("vae"), dtype, device);
        var scheduler = Directory.Exists(Path.Combine(folder, "scheduler")) ? SchedulerConfig.Load(Path.Combine(folder, "scheduler")) : SchedulerConfig.StableDiffusion15();
        ClipTextModel? text = null;
        ClipTokenizer? tokenizer = null;
        if (withText)
        {
            text = ClipTextModel.FromPretrained(Sub("text_encoder"), dtype, device);
            tokenizer = ClipTokenizer.FromPretrained(clipTokenizer ?? Sub("tokenizer"));
        }
        return new StableDiffusionModel { Unet = unet, Vae = vae, SchedulerConfig = scheduler, TextEncoder = text, Tokenizer = tokenizer, Name = Path.GetFileName(Path.GetFullPath(folder).TrimEnd('/')) };
    }

    static StableDiffusionModel LoadSingleFile(string file, ScalarType dtype, Device? device, bool withText, string? clipTokenizer)
    {
        using var source = Checkpoint.Open(file);
        if (!LdmCheckpointConverter.IsLdm(source))
            throw new EllaException($"{file}: not a Stable Diffusion checkpoint (no model.diffusion_model.* keys); pass a diffusers folder or an original single-file checkpoint");
        var (ucfg, uview) = LdmCheckpointConverter.UNet(source);
        var (vcfg, vview) = LdmCheckpointConverter.Vae(source);
        var unet = UNet2DConditionModel.FromSource(ucfg, uview, dtype, device);
        var vae = AutoencoderKL.FromSource(vcfg, vview, dtype, device);
        ClipTextModel? text = null;
        ClipTokenizer? tokenizer = null;
        if (withText)
        {
            var clip = LdmCheckpointConverter.Clip(source)
                       ?? throw new EllaException($"{file}: the checkpoint has no CLIP text encoder (cond_stage_model.transformer.*), which --mode clip / ella+clip need");
            var config = ClipTextConfig.ClipVitL14();
            text = Modules.Common.Pretrained.Load(() => new ClipTextModel(config), clip, dtype, device, "CLIP text encoder", ClipTextModel.OptionalKeys);
            string? tok = clipTokenizer ?? new[] { Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file))!, "tokenizer") }.FirstOrDefault(Directory.Exists);
            tokenizer = tok != null ? ClipTokenizer.FromPretrained(tok)
                : throw new EllaException($"{file}: a single-file checkpoint carries no CLIP vocabulary; pass --clip-tokenizer DIR (vocab.json + merges.txt, e.g. SD1.5's tokenizer/ folder)");
        }
        return new StableDiffusionModel { Unet = unet, Vae = vae, SchedulerConfig = SchedulerConfig.StableDiffusion15(), TextEncoder = text, Tokenizer = tokenizer, Name = Path.GetFileNameWithoutExtension(file) };
    }

    public void Dispose()
    {
        Unet.Dispose();
        Vae.Dispose();
        TextEncoder?.Dispose();
    }
}
