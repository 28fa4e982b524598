using Ella.Lora;
using Ella.Modules.ControlNet;
using Ella.Pipelines.ControlNet;
using Ella.Pipelines.Img2Img;
using Ella.Pipelines.Inpainting;
using Ella.Schedulers;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>
/// The community tools as parts of the denoising loop: how the initial latents are made (noise, an encoded and noised
/// image), per-step hooks (inpainting's blending), extra UNet inputs (ControlNet residuals, the 9-channel
/// concatenation) and weight patches (LoRA). Text-to-image has none of them.
/// </summary>
public sealed partial class EllaPipeline
{
    LoraPatcher? _loras;
    readonly Dictionary<string, ControlNetModel> _controlNets = new();

    /// <summary>Merges the request's LoRAs (files and &lt;lora:…&gt; prompt tags, which are removed from the prompts);
    /// returns the request with the tags stripped.</summary>
    GenerationRequest ApplyLoras(GenerationRequest r, List<string> warnings)
    {
        var specs = r.Loras.ToList();
        var prompts = new List<string>();
        foreach (var p in r.Prompts)
        {
            var (text, tags) = LoraPromptTags.Extract(p);
            prompts.Add(text);
            foreach (var (name, m) in tags)
            {
                var spec = new LoraSpec(LoraPromptTags.Resolve(name, r.LoraDirectory), m);
                if (!specs.Contains(spec)) specs.Add(spec);
            }
        }
        var (negative, negativeTags) = LoraPromptTags.Extract(r.NegativePrompt);
        if (negativeTags.Count > 0) warnings.Add("<lora:…> tags in the negative prompt are ignored");
        if (specs.Count > 0 || _loras != null)
        {
            _loras ??= new LoraPatcher(StableDiffusion.Unet, StableDiffusion.TextEncoder);
            if (_loras.Use(specs, warnings)) ClearNegativeCache();
        }
        return r with { Prompts = prompts, NegativePrompt = negative };
    }

    /// <summary>Checks the tool settings of a request against the loaded models.</summary>
    void ValidateTools(GenerationRequest r)
    {
        int unetIn = StableDiffusion.Unet.Config.InChannels;
        if (r.Mask != null && r.InitImage == null) throw new EllaException("--mask needs --init-image (the image to inpaint)");
        if (r.Mask != null && (r.Mask.Width != r.InitImage!.Width || r.Mask.Height != r.InitImage.Height))
            throw new EllaException($"--mask is {r.Mask.Width}×{r.Mask.Height} but --init-image is {r.InitImage.Width}×{r.InitImage.Height}; they must be the same size");
        if (unetIn == 9 && r.Mask == null) throw new EllaException("this UNet is an inpainting UNet (in_channels 9): give --init-image and --mask");
        if (unetIn != 4 && unetIn != 9) throw new EllaException($"a UNet with in_channels {unetIn} is not supported (4, or 9 for inpainting)");
        if (r.Strength is { } s && (double.IsNaN(s) || s <= 0 || s > 1)) throw new EllaException($"--strength must be in (0, 1], got {s}");
        if (r.Strength != null && r.InitImage == null) throw new EllaException("--strength needs --init-image");
        foreach (var c in r.ControlNets)
        {
            c.Validate();
            CheckControlNetConfig(c.Path);
        }
    }

    /// <summary>A ControlNet's config against the UNet, before anything is loaded or computed (issue 14's pairing check).</summary>
    void CheckControlNetConfig(string path)
    {
        if (!Directory.Exists(path) && !File.Exists(path)) throw new EllaException($"{path}: ControlNet not found (a diffusers ControlNetModel folder or .safetensors file)");
        string config = Directory.Exists(path) ? Path.Combine(path, "config.json") : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "config.json");
        if (!File.Exists(config) || (!Directory.Exists(path) && !File.ReadAllText(config).Contains("\"ControlNetModel\""))) return;
        var problems = Compatibility.ModelCompatibility.ControlNetProblems(config, StableDiffusion.Unet.Config, $"the UNet of {StableDiffusion.Name}");
        if (problems.Count > 0) throw new EllaException(string.Join("; ", problems));
    }

    ControlNetModel LoadControlNet(string path)
    {
        string key = Path.GetFullPath(path);
        if (!_controlNets.TryGetValue(key, out var model))
        {
            model = ControlNetModel.FromPretrained(path, _options.DType, _options.Device);
            if (model.Config.CrossAttentionDim != StableDiffusion.Unet.Config.CrossAttentionDim)
            {
                model.Dispose();
                throw new EllaException($"{path}: the ControlNet's cross_attention_dim {model.Config.CrossAttentionDim} does not match the UNet's {StableDiffusion.Unet.Config.CrossAttentionDim}");
            }
            _controlNets[key] = model;
        }
        return model;
    }

    /// <summary>The initial latents and the loop parts of a request (all empty for text-to-image).</summary>
    (Tensor Latents, DenoisingParts Parts) Start(GenerationRequest r, int rows, IScheduler scheduler, SeedGenerators seeds, bool cfg)
    {
        var vae = StableDiffusion.Vae;
        var device = DeviceOrCpu;
        scheduler.RowGenerators = seeds.Rows;
        Tensor latents;
        DenoisingParts parts;
        if (r.InitImage == null)
        {
            int f = vae.Config.DownscaleFactor;
            using (var noise = seeds.Randn([rows, vae.Config.LatentChannels, r.Height / f, r.Width / f]))
                latents = noise.to(device) * scheduler.InitNoiseSigma;
            parts = DenoisingParts.None;
        }
        else
        {
            using var image = ImageInput.ForVae(r.InitImage, r.Width, r.Height);
            if (r.Mask == null)
            {
                var (l, first) = ImageLatents.Start(vae, scheduler, image, rows, r.Steps, r.Strength ?? 0.8, seeds, _options.DType, device);
                (latents, parts) = (l, new DenoisingParts { FirstStep = first });
            }
            else
            {
                using var mask = ImageInput.Mask(r.Mask, r.Width, r.Height);
                (latents, parts) = Inpainting.Inpainting.Start(vae, scheduler, StableDiffusion.Unet.Config.InChannels, image, mask, rows, r.Steps,
                    r.Strength ?? 1.0, cfg, seeds, _options.DType, device);
            }
        }
        if (r.ControlNets.Count == 0) return (latents, parts);
        int count = scheduler.Timesteps.Count - parts.FirstStep;
        var controls = r.ControlNets.Select(c => (IUNetAddition)new ControlNetAddition(LoadControlNet(c.Path), c.Image, r.Width, r.Height, rows, cfg,
            c.Scale, c.Start, c.End, parts.FirstStep, count, device)).ToList();
        return (latents, new DenoisingParts { FirstStep = parts.FirstStep, UNet = [.. controls, .. parts.UNet], Hooks = parts.Hooks });
    }

    void ClearNegativeCache()
    {
        foreach (var c in _negativeCache.Values) c.Dispose();
        _negativeCache.Clear();
    }

    void DisposeTools()
    {
        _loras?.Unmerge();
        _loras?.Dispose();
        foreach (var c in _controlNets.Values) c.Dispose();
        _controlNets.Clear();
    }
}
