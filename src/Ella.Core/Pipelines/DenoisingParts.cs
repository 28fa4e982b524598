using Ella.Modules.UNet;
using Ella.Schedulers;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>Where the loop is: <see cref="Index"/> into the scheduler's full timestep list, and the condition rows.</summary>
/// <param name="Next">the next timestep of the schedule, or null after the last step</param>
/// <param name="TokenMask">the condition's real tokens [rows, L] when some rows are padded (MLP connector), else null</param>
public readonly record struct StepContext(int Index, StepTime Time, double? Next, bool Cfg, Tensor? TokenMask = null);

/// <summary>Extra UNet inputs of a tool: channels concatenated to the scaled latents (9-channel inpainting) and/or
/// residuals added inside the UNet (ControlNet). Runs on the full CFG batch.</summary>
public interface IUNetAddition : IDisposable
{
    /// <summary>The UNet's input from the scaled latents [rows, 4, h, w] (default: unchanged).</summary>
    Tensor Input(Tensor scaledLatents) => scaledLatents;
    /// <summary>Residuals for this step (already × scale), or null when inactive.</summary>
    /// <param name="scaledLatents">the 4-channel scaled model input</param>
    /// <param name="condition">the encoder_hidden_states the UNet gets (model dtype); its padding, if any, is <see cref="StepContext.TokenMask"/></param>
    UNetResiduals? Residuals(StepContext step, Tensor scaledLatents, Tensor condition, ScalarType dtype) => null;
}

/// <summary>A per-step latent hook after the scheduler step (inpainting's blending outside the mask).</summary>
public interface IStepHook : IDisposable
{
    Tensor AfterStep(StepContext step, Tensor latents, IScheduler scheduler);
}

/// <summary>
/// The parts a tool adds to <see cref="DenoisingLoop.Run"/>: where the schedule starts (img2img's strength), extra UNet
/// inputs and per-step hooks. Text-to-image uses <see cref="None"/> (the plain loop).
/// </summary>
public sealed class DenoisingParts : IDisposable
{
    public static readonly DenoisingParts None = new();

    /// <summary>Index of the first timestep to run (diffusers' t_start · order).</summary>
    public int FirstStep { get; init; }
    public IReadOnlyList<IUNetAddition> UNet { get; init; } = [];
    public IReadOnlyList<IStepHook> Hooks { get; init; } = [];

    public bool IsEmpty => FirstStep == 0 && UNet.Count == 0 && Hooks.Count == 0;

    public void Dispose()
    {
        if (ReferenceEquals(this, None)) return;
        foreach (var u in UNet) u.Dispose();
        foreach (var h in Hooks) h.Dispose();
    }
}
