using System.Text.Json;
using Ella.Configs;
using Ella.Imaging;
using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using Ella.Training;
using Ella.Training.Data;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Training;

/// <summary>
/// `ella train --foreground-weight W`: per-sample loss masks (named by "mask" in metadata.jsonl; `ella world sample
/// --masks` writes them) travel through preprocessing and the feature cache, and each latent element's squared error
/// counts 1 + (W − 1)·mask. Checked against sums computed here element by element, and refused where it cannot run.
/// </summary>
public sealed class ForegroundWeightTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-foreground-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    static float[] Values(Tensor t) => t.to(ScalarType.Float32).contiguous().data<float>().ToArray();

    [Theory]
    [InlineData(null)]
    [InlineData(5.0)]
    public void The_weighted_loss_is_the_weighted_mean_of_squared_errors(double? snrGamma)
    {
        var g = new Generator(3);
        using var pred = randn([2, 4, 3, 3], generator: g);
        using var target = randn([2, 4, 3, 3], generator: g);
        using var weights = 1 + 4 * rand([2, 1, 3, 3], generator: g).gt(0.6).to(ScalarType.Float32);
        using var t = tensor(new long[] { 10, 900 });
        var objective = new DiffusionObjective(new Ella.Schedulers.NoiseSchedule(new SchedulerConfig()), PredictionType.Epsilon, snrGamma);
        using var loss = objective.Loss(pred, target, t, weights);

        // by hand: per row Σ w·(p − q)² / Σ w over C·H·W (the mask broadcast over channels); rows averaged, each times
        // its min-SNR weight min(snr, γ)/snr when γ is given
        float[] p = Values(pred), q = Values(target), w = Values(weights);
        var acp = new Ella.Schedulers.NoiseSchedule(new SchedulerConfig()).AlphasCumprod;
        long[] steps = [10, 900];
        double[] num = new double[2], den = new double[2];
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 9; i++)
                {
                    double e = p[(r * 4 + c) * 9 + i] - q[(r * 4 + c) * 9 + i], wi = w[r * 9 + i];
                    num[r] += wi * e * e;
                    den[r] += wi;
                }
        double expected = snrGamma is not { } gamma ? num.Sum() / den.Sum()
            : Enumerable.Range(0, 2).Average(r =>
            {
                double snr = acp[steps[r]] / (1 - acp[steps[r]]);
                return num[r] / den[r] * Math.Min(snr, gamma) / snr;
            });
        Assert.Equal(expected, loss.item<float>(), 5);
        // weights of one make it the plain loss, and the mask's weights change it
        using var ones = ones_like(weights);
        Assert.Equal(objective.Loss(pred, target, t).item<float>(), objective.Loss(pred, target, t, ones).item<float>(), 6);
        Assert.NotEqual(objective.Loss(pred, target, t).item<float>(), loss.item<float>(), 3);
    }

    /// <summary>A 24×16 image red on its left 9 columns and white elsewhere, and its mask (white where red).</summary>
    string MaskedFolder()
    {
        string d = Path.Combine(_dir, "masked");
        Directory.CreateDirectory(Path.Combine(d, "masks"));
        static byte[] Png(Func<int, SKColor> color)
        {
            using var bitmap = new SKBitmap(24, 16);
            for (int y = 0; y < 16; y++)
                for (int x = 0; x < 24; x++) bitmap.SetPixel(x, y, color(x));
            using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
            return data.ToArray();
        }
        File.WriteAllBytes(Path.Combine(d, "a.png"), Png(x => x < 9 ? new SKColor(255, 0, 0) : SKColors.White));
        File.WriteAllBytes(Path.Combine(d, "masks", "a.png"), Png(x => x < 9 ? SKColors.White : SKColors.Black));
        File.WriteAllText(Path.Combine(d, "metadata.jsonl"), """{"file_name": "a.png", "text": "a red bar", "mask": "masks/a.png"}""" + "\n");
        return d;
    }

    [Fact]
    public void A_mask_takes_its_images_crop_and_flip_and_is_not_a_sample_itself()
    {
        using var data = ImageCaptionDatasets.Open([MaskedFolder()], new ImagePreprocessing(12, RandomCrop: true, RandomFlip: true));
        Assert.Equal(1, data.Count);
        Assert.True(data.HasMasks);
        var seen = new HashSet<string>();
        for (ulong seed = 0; seed < 12; seed++)
        {
            using var rng = new Generator(seed);
            using var sample = data.TryLoad(0, rng)!;
            Assert.NotNull(sample.Mask);
            Assert.Equal([1L, 12, 12], sample.Mask!.shape);
            // red is (1, −1, −1) and white (1, 1, 1): the mask must be (1 − green) / 2 at every pixel, wherever the crop
            // and the flip put the bar
            float[] green = Values(sample.Pixels[1]), mask = Values(sample.Mask);
            for (int i = 0; i < mask.Length; i++) Assert.Equal((1 - green[i]) / 2, mask[i], 3);
            seen.Add(string.Join(",", mask.Take(12).Select(v => v.ToString("F2"))));
            // the same generator state gives the same pixels as a load without a mask would: the image's draws are unchanged
            using var again = new Generator(seed);
            using var plain = ImagePreprocessor.Load(File.ReadAllBytes(Path.Combine(_dir, "masked", "a.png")), new ImagePreprocessing(12, true, true), again);
            Assert.Equal(Values(plain), Values(sample.Pixels));
        }
        Assert.True(seen.Count > 1, "crops and flips should move the bar");
    }

    [Fact]
    public void A_missing_or_mis_sized_mask_skips_its_sample_with_the_reason()
    {
        string d = MaskedFolder();
        File.AppendAllText(Path.Combine(d, "metadata.jsonl"), """{"file_name": "b.png", "text": "b", "mask": "masks/none.png"}""" + "\n" +
                                                              """{"file_name": "c.png", "text": "c", "mask": "masks/small.png"}""" + "\n");
        File.Copy(Path.Combine(d, "a.png"), Path.Combine(d, "b.png"));
        File.Copy(Path.Combine(d, "a.png"), Path.Combine(d, "c.png"));
        File.WriteAllBytes(Path.Combine(d, "masks", "small.png"), Data.TestImages.Png(8, 8));
        var warnings = new List<string>();
        using var data = ImageCaptionDatasets.Open([d], new ImagePreprocessing(12), warnings.Add);
        using var rng = new Generator(0);
        Assert.Null(data.TryLoad(1, rng));
        Assert.Null(data.TryLoad(2, rng));
        Assert.Equal(SkipReasons.MissingMask, data.SkipReasonOf(1));
        Assert.Equal(SkipReasons.BadMask, data.SkipReasonOf(2));
        Assert.Contains(warnings, w => w.Contains("masks/small.png is 8×8, the image 24×16"));
    }

    string WorldCache(TinyWorldFolder world, bool masks)
    {
        string data = Path.Combine(_dir, masks ? "world-masks" : "world");
        var sample = CliRunner.Run(["world", "sample", "--count", "3", "--out", data, .. masks ? new[] { "--masks" } : []]);
        Assert.True(sample.ExitCode == 0, sample.Error);
        string cache = Path.Combine(_dir, masks ? "cache-masks" : "cache");
        var r = CliRunner.Run("train", "cache", "--sd", world.Folder, "--text-encoder", "minilm", "--data", data, "--output", cache, "--resolution", "64");
        Assert.True(r.ExitCode == 0, r.Error);
        return cache;
    }

    [Fact]
    public void World_masks_cover_the_objects_and_the_cache_keeps_them_at_latent_resolution()
    {
        using var world = new TinyWorldFolder();
        string cache = WorldCache(world, masks: true);
        string data = Path.Combine(_dir, "world-masks");
        using var opened = FeatureCache.Open(cache);
        Assert.True(opened.HasMasks);
        for (int i = 0; i < 3; i++)
        {
            using var sample = opened.Load(i);
            var line = File.ReadLines(Path.Combine(data, "metadata.jsonl")).Select(l => JsonDocument.Parse(l).RootElement)
                .Single(e => e.GetProperty("file_name").GetString() == sample.Key);
            var image = RgbImage.Load(Path.Combine(data, sample.Key));
            var mask = RgbImage.Load(Path.Combine(data, line.GetProperty("mask").GetString()!));
            // the mask is zero exactly where the render shows the background colour
            var bg = (image.Pixels[0], image.Pixels[1], image.Pixels[2]);
            int cells = TinyWorldFolder.SampleSize, f = TinyWorldFolder.VaeFactor;
            var expected = new double[cells * cells];
            for (int y = 0; y < 64; y++)
                for (int x = 0; x < 64; x++)
                {
                    int k = (y * 64 + x) * 3;
                    bool background = (image.Pixels[k], image.Pixels[k + 1], image.Pixels[k + 2]) == bg;
                    Assert.True(background == (mask.Pixels[k] == 0), $"{sample.Key} ({x}, {y})");
                    expected[y / f * cells + x / f] += mask.Pixels[k] / 255.0 / (f * f);
                }
            Assert.NotNull(sample.Mask);
            Assert.Equal([1L, cells, cells], sample.Mask!.shape);
            var got = Values(sample.Mask);
            for (int c = 0; c < got.Length; c++) Assert.Equal(expected[c], got[c], 2); // bf16 storage
            Assert.True(got.Max() > 0.9, $"{sample.Key}: an object should fill at least one latent cell");
        }
    }

    [Fact]
    public void The_connectors_loss_uses_the_batch_weights()
    {
        using var world = new TinyWorldFolder();
        using var sd = StableDiffusionModel.Load(world.Folder, ScalarType.Float32, CPU, withTextEncoder: false);
        using var connector = (EllaConnector)Connectors.FromPretrained(world.Connector);
        var objective = DiffusionObjective.FromConfig(sd.SchedulerConfig, null);
        using var nullFeatures = zeros([2, 384]);
        using var trainer = new ConnectorTrainer(sd.Unet, connector, objective, nullFeatures, new OptimizerSettings());
        var g = new Generator(1);
        int s = TinyWorldFolder.SampleSize;
        TrainingBatch Batch(Tensor? weights) => new(randn([2, 4, s, s], generator: new Generator(2)), randn([2, 4, s, s], generator: new Generator(3)),
            tensor(new long[] { 50, 700 }), [randn([5, 384], generator: new Generator(4)), randn([6, 384], generator: new Generator(5))], [false, false], null, weights);
        var w = 1 + 7 * rand([2, 1, s, s], generator: g).gt(0.7).to(ScalarType.Float32);
        using var plain = Batch(null);
        using var weighted = Batch(w);
        using var scope = NewDisposeScope();
        double unweightedLoss = trainer.Loss(plain).item<float>();
        double weightedLoss = trainer.Loss(weighted).item<float>();

        // by hand: the same prediction, weighted
        using var noGrad = no_grad();
        var noisy = objective.AddNoise(weighted.Latents, weighted.Noise, weighted.Timesteps);
        var cond = cat([connector.forward(weighted.TextFeatures[0].unsqueeze(0), weighted.Timesteps[0..1]),
                        connector.forward(weighted.TextFeatures[1].unsqueeze(0), weighted.Timesteps[1..2])], 0);
        var pred = sd.Unet.forward(noisy, weighted.Timesteps, cond);
        var target = objective.Target(weighted.Latents, weighted.Noise, weighted.Timesteps);
        double byHand = ((pred - target).square() * w).sum().item<float>() / (w.sum().item<float>() * 4);
        Assert.Equal(byHand, weightedLoss, 5);
        Assert.Equal((pred - target).square().mean().item<float>(), unweightedLoss, 5);
    }

    [Fact]
    public void Train_with_a_foreground_weight_runs_on_masks_and_refuses_data_without_them()
    {
        using var world = new TinyWorldFolder();
        string masked = WorldCache(world, masks: true), plain = WorldCache(world, masks: false);
        string output = Path.Combine(_dir, "run");
        string[] Args(string cache, int steps, params string[] extra) =>
            ["train", "--sd", world.Folder, "--cache", cache, "--max-steps", steps.ToString(), "--batch", "2", "--resolution", "64", "--blocks", "1",
             "--save-every", "1", .. extra];

        var refused = CliRunner.Run(Args(plain, 1, "--output", Path.Combine(_dir, "no"), "--foreground-weight", "4"));
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains($"--foreground-weight 4: --cache {plain} has no loss masks", refused.Error);
        Assert.DoesNotContain("   at ", refused.Error);

        var first = CliRunner.Run(Args(masked, 1, "--output", output, "--foreground-weight", "4"));
        Assert.True(first.ExitCode == 0, first.Error);
        Assert.Contains("foreground weight: each latent element's squared error counts 1 + 3 × its loss mask", first.Error);
        var other = CliRunner.Run(Args(masked, 2, "--resume", output, "--foreground-weight", "2"));
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("--foreground-weight 2: the run in", other.Error);
        var resumed = CliRunner.Run(Args(masked, 2, "--resume", output));
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Contains("resuming with --foreground-weight 4", resumed.Error);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(output, "log.jsonl")).Length);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-2")]
    [InlineData("NaN")]
    public void A_foreground_weight_that_is_not_positive_is_refused(string value)
    {
        var r = CliRunner.Run("train", "--sd", Fixtures.PathOf("diffusion", "pipeline", "model"), "--cache", Path.Combine(_dir, "none"), "--output", Path.Combine(_dir, "o"),
            "--foreground-weight", value);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--foreground-weight must be a positive number", r.Error);
    }
}
