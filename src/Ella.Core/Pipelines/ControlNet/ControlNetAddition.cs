using Ella.Imaging;
using Ella.Modules.ControlNet;
using Ella.Modules.UNet;
using Ella.Pipelines.Img2Img;
using static TorchSharp.torch;

namespace Ella.Pipelines.ControlNet;

/// <summary>One ControlNet of a request: the model file, its control image and when and how strongly it acts.</summary>
/// <param name="Path">diffusers ControlNetModel folder or diffusers-layout .safetensors</param>
/// <param name="Image">the control image (already preprocessed, e.g. Canny edges)</param>
/// <param name="Start">fraction of the steps where it starts acting (control_guidance_start)</param>
/// <param name="End">fraction where it stops (control_guidance_end)</param>
public sealed record ControlNetUnit(string Path, RgbImage Image, double Scale = 1.0, double Start = 0.0, double End = 1.0)
{
    public void Validate()
    {
        if (double.IsNaN(Scale)) throw new EllaException($"--control-scale for {Path}: not a number");
        if (!(Start >= 0 && Start <= End && End <= 1))
            throw new EllaException($"--control-start {Start} / --control-end {End} for {Path}: need 0 ≤ start ≤ end ≤ 1");
    }
}

/// <summary>
/// diffusers' StableDiffusionControlNetPipeline (guess mode off) as a UNet addition: the ControlNet gets the same
/// scaled latents, timestep and encoder_hidden_states (ELLA's tokens) as the UNet on the full CFG batch, and the control
/// image repeated per row (twice with CFG); its residuals × scale × keep go into the UNet. keep(i) = 0 when
/// i/N &lt; start or (i+1)/N &gt; end, over the N steps actually run.
/// </summary>
public sealed class ControlNetAddition : IUNetAddition
{
    readonly ControlNetModel _model;
    readonly Tensor _image;
    Tensor? _embedding;
    readonly double _scale, _start, _end;
    readonly int _firstStep, _count;

    /// <param name="firstStep">index of the first timestep run (img2img), <paramref name="count"/> the steps run</param>
    public ControlNetAddition(ControlNetModel model, RgbImage image, int width, int height, int rows, bool cfg, double scale, double start, double end,
        int firstStep, int count, Device device)
    {
        _model = model;
        using var scope = NewDisposeScope();
        var img = ImageInput.ForControl(image, width, height).to(device).expand(rows, -1, -1, -1);
        _image = (cfg ? cat([img, img], 0) : img.contiguous()).DetachFromDisposeScope();
        (_scale, _start, _end, _firstStep, _count) = (scale, start, end, firstStep, count);
    }

    public UNetResiduals? Residuals(StepContext step, Tensor scaledLatents, Tensor condition, ScalarType dtype)
    {
        int i = step.Index - _firstStep;
        bool off = (double)i / _count < _start || (double)(i + 1) / _count > _end;
        double scale = _scale * (off ? 0.0 : 1.0);
        // diffusers still runs the ControlNet with scale 0; skipping it gives the same UNet input (zero residuals).
        if (scale == 0.0) return null;
        // The control image's embedding is the same at every step: computed once per generation.
        if (_embedding is null || _embedding.dtype != dtype)
        {
            _embedding?.Dispose();
            _embedding = _model.EmbedControl(_image, dtype).DetachFromDisposeScope();
        }
        var embedding = _embedding;
        return _model.ForwardEmbedded(scaledLatents.to_type(dtype), step.Time.Tensor.to(scaledLatents.device), condition, embedding, scale, step.TokenMask);
    }

    public void Dispose()
    {
        _image.Dispose();
        _embedding?.Dispose();
    }
}
