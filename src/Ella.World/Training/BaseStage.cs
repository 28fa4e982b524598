using Ella.Modules.Clip;
using Ella.Modules.UNet;
using Ella.Modules.Vae;
using Ella.Text;
using Ella.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>
/// Stage 2: the base model, a CLIP text encoder and a UNet trained together from scratch on the SHORT captions
/// (web alt-text: at most two objects, often no colour), with caption dropout to the empty caption (what the negative
/// branch of classifier-free guidance sees). The VAE is frozen. Loss: the objective's (v or epsilon) MSE, in float32.
/// <paramref name="unet"/> is the module that computes: the float32 UNet itself, or its low-precision copy (mixed
/// precision: the text features are cast to its dtype, the prediction back to float32).
/// </summary>
public sealed class BaseStage(AutoencoderKL vae, ClipTextModel clip, ClipTokenizer tokenizer, UNet2DConditionModel unet,
    DiffusionObjective objective, WorldBatches data, double captionDropout)
{
    public Tensor Loss(int step, Generator rng)
    {
        using var scope = NewDisposeScope();
        var items = data.Items(step);
        Tensor latents;
        using (no_grad())
        {
            using var posterior = vae.Encode(WorldBatches.Images(items));
            latents = ((posterior.Mean + posterior.Std() * randn(posterior.Mean.shape, generator: rng)) * vae.Config.ScalingFactor).detach();
        }
        var noise = randn(latents.shape, generator: rng);
        var t = randint(0, objective.NumTrainTimesteps, [items.Count], dtype: ScalarType.Int64, generator: rng);
        var drop = rand([items.Count], generator: rng).data<float>().ToArray();
        var captions = items.Select((item, i) => drop[i] < captionDropout ? "" : item.ShortCaption).ToList();
        var text = clip.Encode(tokenizer.InputIds(captions, clip.Config.MaxPositionEmbeddings));
        var noisy = objective.AddNoise(latents, noise, t);
        var dtype = unet.parameters().First().dtype;
        var pred = unet.forward(noisy.to(dtype), t, text.LastHiddenState.to(dtype)).to(ScalarType.Float32);
        return objective.Loss(pred, objective.Target(latents, noise, t), t).MoveToOuterDisposeScope();
    }
}
