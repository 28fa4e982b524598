using Ella.Modules.Vae;
using Ella.Pipelines.Img2Img;
using Ella.Schedulers;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Pipelines.Inpainting;

/// <summary>
/// diffusers' StableDiffusionInpaintPipeline (0.27.2): white = repaint. Start: the strength's timesteps; image latents
/// (sample × scaling_factor) when the UNet has 4 channels or strength &lt; 1; noise; pure noise × init_noise_sigma at
/// strength 1, else the image latents noised to the first timestep. Then the masked image (image × (mask &lt; 0.5)) is
/// encoded (drawing from the generator in both cases) and the mask is resized to latent size (nearest).
/// A 4-channel UNet gets <see cref="MaskBlending"/> after each step; a 9-channel inpainting UNet gets
/// <see cref="InpaintingUNetInput"/>.
/// </summary>
public static class Inpainting
{
    public static (Tensor Latents, DenoisingParts Parts) Start(AutoencoderKL vae, IScheduler scheduler, int unetInChannels, Tensor image, Tensor mask,
        int rows, int steps, double strength, bool cfg, SeedGenerators seeds, ScalarType dtype, Device device)
    {
        if (unetInChannels is not (4 or 9)) throw new EllaException($"inpainting needs a UNet with 4 or 9 input channels, this one has {unetInChannels}");
        int first = ImageLatents.FirstStep(steps, strength);
        bool strengthMax = strength == 1.0;
        bool blend = unetInChannels == 4;
        using var scope = NewDisposeScope();
        var imageLatents = blend || !strengthMax ? ImageLatents.Encode(vae, image, rows, seeds, dtype, device) : null;
        int f = vae.Config.DownscaleFactor;
        long h = image.shape[2] / f, w = image.shape[3] / f;
        var noise = seeds.Randn([rows, vae.Config.LatentChannels, h, w]).to(device);
        var latents = strengthMax ? noise * scheduler.InitNoiseSigma : ImageLatents.AddNoise(scheduler, imageLatents!, noise, scheduler.Timesteps[first]);
        var latentMask = nn.functional.interpolate(mask.to(device), [h, w], mode: InterpolationMode.Nearest).expand(rows, -1, -1, -1);
        var maskedImage = image * mask.lt(0.5);
        var maskedLatents = ImageLatents.Encode(vae, maskedImage, rows, seeds, dtype, device);
        IUNetAddition[] unet = [];
        IStepHook[] hooks = [];
        if (blend) hooks = [new MaskBlending(imageLatents!, noise, latentMask)];
        else unet = [new InpaintingUNetInput(latentMask, maskedLatents, cfg)];
        return (latents.MoveToOuterDisposeScope(), new DenoisingParts { FirstStep = first, UNet = unet, Hooks = hooks });
    }
}

/// <summary>4-channel inpainting: after each step, outside the mask the latents become the image latents noised to the
/// next timestep (the clean image latents after the last step).</summary>
public sealed class MaskBlending : IStepHook
{
    readonly Tensor _imageLatents, _noise, _mask;

    public MaskBlending(Tensor imageLatents, Tensor noise, Tensor mask)
    {
        _imageLatents = imageLatents.contiguous().DetachFromDisposeScope();
        _noise = noise.contiguous().DetachFromDisposeScope();
        _mask = mask.contiguous().DetachFromDisposeScope();
    }

    public Tensor AfterStep(StepContext step, Tensor latents, IScheduler scheduler)
    {
        var proper = step.Next is { } next ? ImageLatents.AddNoise(scheduler, _imageLatents, _noise, next) : _imageLatents.alias();
        return (1 - _mask) * proper + _mask * latents;
    }

    public void Dispose()
    {
        _imageLatents.Dispose();
        _noise.Dispose();
        _mask.Dispose();
    }
}

/// <summary>9-channel inpainting UNet: input = cat(scaled latents, mask at latent size, masked-image latents), the
/// last two repeated for both halves of the CFG batch.</summary>
public sealed class InpaintingUNetInput : IUNetAddition
{
    readonly Tensor _extra;

    public InpaintingUNetInput(Tensor mask, Tensor maskedImageLatents, bool cfg)
    {
        using var scope = NewDisposeScope();
        var extra = cat([mask, maskedImageLatents], 1);
        _extra = (cfg ? cat([extra, extra], 0) : extra.contiguous()).DetachFromDisposeScope();
    }

    public Tensor Input(Tensor scaledLatents) => cat([scaledLatents, _extra.to_type(scaledLatents.dtype)], 1);

    public void Dispose() => _extra.Dispose();
}
