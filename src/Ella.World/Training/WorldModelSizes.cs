using System.Text.Json;
using Ella.Configs;

namespace Ella.World.Training;

/// <summary>
/// The sizes of the shapes world's models, chosen by measured step time so that the whole recipe fits in 90 minutes on
/// a 2-core CPU (see the notes in README): a VAE with 4× down-sampling (64×64 RGB → 16×16×4), a small CLIP text model
/// on the real CLIP vocabulary whose width is the UNet's <c>cross_attention_dim</c>, and a UNet on 16×16 latents.
/// </summary>
public sealed record WorldModelSizes(int[] VaeChannels, int[] UNetChannels, int UNetLayersPerBlock, int Width, int ClipLayers, int ConnectorBlocks)
{
    /// <summary>
    /// The base CLIP's context in tokens (its max_position_embeddings and its tokenizer's model_max_length): 77 as
    /// SD1.5's. The short captions the base learns from are at most 16 words, so a 77-token context is mostly
    /// padding, every padding position a causal summary of the whole caption.
    /// </summary>
    public int ClipMaxLength { get; init; } = 77;

    /// <summary>
    /// The shipped sizes: two UNet layers per block and width 64 (base CLIP + UNet: 9.5 M parameters), whose token
    /// embedding (49,408 × 64) keeps the folder under 30 MB with the connectors and ablations. A width-96 base (linear
    /// schedule) scored 1.6 points higher on the eval set and 5.3 lower on paraphrases than the shipped width-64 one
    /// (cosine schedule), with 50% more text encoder (see docs/shapes-world-experiments.md).
    /// </summary>
    public static WorldModelSizes Default => new([16, 32, 64], [32, 64, 128], 2, 64, 3, 6);

    /// <summary>Tiny sizes for tests (seconds per stage).</summary>
    public static WorldModelSizes Tiny => new([8, 16, 16], [16, 32, 32], 1, 32, 1, 1);

    public AutoencoderKLConfig Vae() => new()
    {
        InChannels = 3, OutChannels = 3, LatentChannels = 4,
        DownBlockTypes = VaeChannels.Select(_ => "DownEncoderBlock2D").ToArray(),
        UpBlockTypes = VaeChannels.Select(_ => "UpDecoderBlock2D").ToArray(),
        BlockOutChannels = VaeChannels, LayersPerBlock = 1, NormNumGroups = Math.Max(1, VaeChannels[0] / 4), SampleSize = 64,
        ScalingFactor = 1.0, MidBlockAddAttention = true,
    };

    public UNet2DConditionConfig UNet() => new()
    {
        SampleSize = 16, InChannels = 4, OutChannels = 4,
        DownBlockTypes = UNetChannels.Select(_ => "CrossAttnDownBlock2D").ToArray(),
        UpBlockTypes = UNetChannels.Select(_ => "CrossAttnUpBlock2D").ToArray(),
        BlockOutChannels = UNetChannels, LayersPerBlock = UNetLayersPerBlock, NormNumGroups = Math.Max(1, UNetChannels[0] / 4),
        CrossAttentionDim = Width, AttentionHeadDim = JsonSerializer.SerializeToElement(Math.Max(1, UNetChannels[0] / 16)),
    };

    public ClipTextConfig Clip() => new()
    {
        VocabSize = 49408, HiddenSize = Width, IntermediateSize = 4 * Width, NumHiddenLayers = ClipLayers,
        NumAttentionHeads = Math.Max(1, Width / 32), MaxPositionEmbeddings = ClipMaxLength, HiddenAct = "quick_gelu", ProjectionDim = Width,
        ModelType = "clip_text_model",
    };

    /// <summary>
    /// DDPM's linear schedule (β 1e-4 … 0.02): enough noise at t = 999 for 16×16 latents, where SD's scaled_linear leaves
    /// too much signal. The recipe predicts v (<paramref name="prediction"/>): the epsilon loss weights an x0 error by the
    /// SNR, almost nothing at the high-noise steps where the layout, and so the caption, is decided; v weights it by
    /// SNR + 1 ≥ 1. Measured on a 3000-step epsilon base: its loss with the right caption and with another row's caption
    /// differed by under 0.1% at every noise level, so that base had learnt to ignore its text.
    /// <paramref name="betaSchedule"/> squaredcos_cap_v2 is improved DDPM's cosine schedule: the linear one leaves the
    /// latents at an SNR under 0.1 from t ≈ 500 on, the cosine one only from t ≈ 800.
    /// </summary>
    public static SchedulerConfig Scheduler(string prediction = "v_prediction", string betaSchedule = "linear") => new()
    {
        ClassName = "DPMSolverMultistepScheduler", NumTrainTimesteps = 1000, BetaStart = 0.0001, BetaEnd = 0.02,
        BetaSchedule = betaSchedule, PredictionType = prediction, TimestepSpacing = "leading", StepsOffset = 1, SetAlphaToOne = false, ClipSample = false,
    };
}
