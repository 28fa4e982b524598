using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Modules.UNet;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using Ella.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Pipelines;

/// <summary>
/// A connector whose token count follows the text (MLP) gives rows of different lengths; they share one UNet batch
/// zero-padded. Zero tokens are not neutral in cross-attention (each adds a logit-0 key that dilutes every softmax), so
/// the padding goes with a mask (diffusers' encoder_attention_mask). Here: the mask makes padding invisible to the UNet,
/// in sampling and in training, and the conditioners report it.
/// </summary>
public sealed class TokenMaskTests : IDisposable
{
    readonly TinyWorldFolder _world = new();
    public void Dispose() => _world.Dispose();

    UNet2DConditionModel Unet()
    {
        var unet = UNet2DConditionModel.FromPretrained(Path.Combine(_world.Folder, "unet"));
        // The tiny random UNet barely reads its condition; scaling its cross-attention values makes the condition
        // (and so any padding) matter as in a trained model.
        using (no_grad())
            foreach (var (name, p) in unet.named_parameters())
                if (name.Contains("attn2.to_v.")) p.mul_(30);
        return unet;
    }

    static EllaConnectorConfig Mlp => new()
    {
        ConnectorType = "mlp", InputDim = 384, Width = TinyWorldFolder.CrossAttentionDim, Layers = 1, Heads = 4, NumLatents = 8,
        TimeChannel = 32, TimeEmbedDim = 32,
    };

    [Fact]
    public void A_masked_padded_row_gives_what_the_row_gives_alone()
    {
        using var unet = Unet();
        using var _ = inference_mode();
        var g = new Generator(3);
        using var sample = randn([2, 4, TinyWorldFolder.SampleSize, TinyWorldFolder.SampleSize], generator: g);
        using var t = tensor(new long[] { 250, 700 });
        using var longRow = randn([1, 9, TinyWorldFolder.CrossAttentionDim], generator: g);
        using var shortRow = randn([1, 4, TinyWorldFolder.CrossAttentionDim], generator: g);
        var (joined, mask) = TokenPadding.Join((longRow, null), (shortRow, null));
        using var joinedScope = joined;
        using var maskScope = mask;
        Assert.NotNull(mask);
        TensorAssert.Close(tensor(new float[,] { { 1, 1, 1, 1, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 0, 0, 0, 0, 0 } }), mask!, "token mask", 0);

        using var masked = unet.Forward(sample, t, joined, null, mask);
        using var alone = unet.forward(sample[1..2], t[1..2], shortRow);
        TensorAssert.Close(alone, masked[1..2], "the short row, padded and masked, against the row alone");
        using var longAlone = unet.forward(sample[0..1], t[0..1], longRow);
        TensorAssert.Close(longAlone, masked[0..1], "the unpadded row in the same batch");

        using var unmasked = unet.forward(sample, t, joined);
        double shift = (unmasked[1..2] - alone).abs().max().item<float>();
        Assert.True(shift > 1e-3, $"without the mask the zero padding should change the short row's prediction (max change {shift})");
    }

    [Fact]
    public void The_trainer_masks_the_padding_of_a_batch_of_mlp_rows()
    {
        using var unet = Unet();
        manual_seed(4);
        using var connector = Connectors.Create(Mlp);
        var objective = DiffusionObjective.FromConfig(SchedulerConfig.StableDiffusion15(), null);
        using var nullFeatures = randn([2, 384], generator: new Generator(9));
        using var trainer = new ConnectorTrainer(unet, connector, objective, nullFeatures, new OptimizerSettings());
        var g = new Generator(5);
        using var latents = randn([2, 4, TinyWorldFolder.SampleSize, TinyWorldFolder.SampleSize], generator: g);
        using var noise = randn([2, 4, TinyWorldFolder.SampleSize, TinyWorldFolder.SampleSize], generator: g);
        using var t = tensor(new long[] { 100, 800 });
        using var f0 = randn([7, 384], generator: g);
        using var f1 = randn([3, 384], generator: g);

        double Loss(int[] rows)
        {
            using var scope = NewDisposeScope();
            var idx = tensor(rows.Select(r => (long)r).ToArray());
            var features = rows.Select(r => (r == 0 ? f0 : f1).alias()).ToList(); // the batch disposes its features
            using var batch = new TrainingBatch(latents.index_select(0, idx), noise.index_select(0, idx), t.index_select(0, idx), features,
                rows.Select(_ => false).ToArray());
            using (no_grad()) return trainer.Loss(batch).item<float>();
        }

        double both = Loss([0, 1]);
        double apart = (Loss([0]) + Loss([1])) / 2;
        Assert.True(Math.Abs(both - apart) < 1e-5 * Math.Abs(apart), $"batch loss {both} against the mean of the rows alone {apart}");
    }

    [Fact]
    public void Conditioners_report_the_padding_of_mlp_rows()
    {
        manual_seed(6);
        using var connector = Connectors.Create(Mlp);
        using var _ = inference_mode();
        using var a = randn(1, 6, 384);
        using var b = randn(1, 2, 384);
        using var ella = new EllaConditioner(connector, [a, b, a], ScalarType.Float32);
        using var time = tensor(10L);
        using var c = ella.At(new StepTime(10, time));
        Assert.Equal([3L, 6, TinyWorldFolder.CrossAttentionDim], c.shape);
        TensorAssert.Close(tensor(new float[,] { { 1, 1, 1, 1, 1, 1 }, { 1, 1, 0, 0, 0, 0 }, { 1, 1, 1, 1, 1, 1 } }), ella.TokenMask!, "EllaConditioner mask", 0);

        using var same = new EllaConditioner(connector, [a, a], ScalarType.Float32);
        using var s = same.At(new StepTime(10, time));
        Assert.Null(same.TokenMask);

        // ELLA+CLIP: the ELLA part's padding stays masked, CLIP's tokens are all read.
        using var clip = new StaticConditioner(zeros(3, 5, TinyWorldFolder.CrossAttentionDim));
        using var concat = new ConcatConditioner(new EllaConditioner(connector, [b, a, b], ScalarType.Float32), clip);
        using var both = concat.At(new StepTime(10, time));
        Assert.Equal([3L, 11, TinyWorldFolder.CrossAttentionDim], both.shape);
        Assert.Equal(new float[] { 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1 }, concat.TokenMask![0].data<float>().ToArray());
        Assert.Equal(11f, concat.TokenMask![1].sum().item<float>());
    }
}
