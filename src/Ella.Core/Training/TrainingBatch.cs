using static TorchSharp.torch;

namespace Ella.Training;

/// <summary>
/// One micro-batch of a training step, everything already drawn: x0 = VAE latents times scaling_factor
/// [B, 4, h, w] float32, the noise [B, 4, h, w], one integer timestep per row [B] (int64), each row's text features
/// ([L_r, D] or [1, L_r, D]; rows may differ in length), which rows have their caption dropped, and the captions
/// themselves (for a <see cref="ClipTeacher"/>; may be null otherwise), and the loss weights [B, 1, h, w] (null: every
/// latent element counts the same).
/// The batch owns its tensors.
/// </summary>
public sealed class TrainingBatch(Tensor latents, Tensor noise, Tensor timesteps, IReadOnlyList<Tensor> textFeatures, bool[] drop,
    IReadOnlyList<string>? captions = null, Tensor? lossWeights = null) : IDisposable
{
    public Tensor Latents { get; } = latents;
    public Tensor Noise { get; } = noise;
    public Tensor Timesteps { get; } = timesteps;
    public IReadOnlyList<Tensor> TextFeatures { get; } = textFeatures;
    public bool[] Drop { get; } = drop;
    public IReadOnlyList<string>? Captions { get; } = captions;
    public Tensor? LossWeights { get; } = lossWeights;
    public int Rows => (int)Latents.shape[0];

    public void Dispose()
    {
        Latents.Dispose();
        Noise.Dispose();
        Timesteps.Dispose();
        LossWeights?.Dispose();
        foreach (var f in TextFeatures) f.Dispose();
    }
}
