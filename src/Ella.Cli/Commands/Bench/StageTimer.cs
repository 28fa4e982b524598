using System.Diagnostics;
using Ella.Benchmarks;
using Ella.Configs;
using Ella.Diagnostics;
using Ella.Hardware;
using Ella.Modules.Ella;
using Ella.Modules.T5;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Cli.Commands.Bench;

/// <summary>One timed stage: its timings (null when skipped), analytic FLOPs, and the time predicted from the peak.</summary>
public sealed record StageTiming(string Key, string Label, TimingStats? Time, double Flops, string? SkipReason = null)
{
    public double? Efficiency(double peakGflops) => Time is { Median: > 0 } t && peakGflops > 0 && Flops > 0 ? Flops / t.Median / (peakGflops * 1e9) : null;
}

/// <summary>Everything measured in one dtype.</summary>
public sealed class DTypeResult(ScalarType dtype, bool emulated)
{
    public ScalarType DType { get; } = dtype;
    public bool Emulated { get; } = emulated;
    public TimingStats? Load { get; set; }
    /// <summary>Stages in run order, by JSON key prefix (<c>t5_encode</c>, <c>tsc_step</c>, <c>unet_step</c>, <c>vae_decode</c>).</summary>
    public List<StageTiming> Stages { get; } = [];
    public double PeakRssMb { get; set; }
    /// <summary>The short pipeline run's image, kept for the bf16-vs-fp32 PSNR.</summary>
    public Tensor? Image { get; set; }

    public StageTiming? Stage(string key) => Stages.FirstOrDefault(s => s.Key == key);
}

/// <summary>
/// Loads the four models in one dtype and times each stage: T5 encode (1×128 tokens), TSC step (2×128 → 2×64),
/// UNet step with CFG (2 rows), VAE decode (1 image), plus the short pipeline run for the PSNR. An emulated dtype is
/// timed once without warm-up, and a stage whose predicted time (FLOPs ÷ measured peak) exceeds
/// <see cref="EmulatedStageBudgetSeconds"/> is skipped, so a bench never runs for an hour.
/// </summary>
public static class StageTimer
{
    public const int PsnrSteps = 3;
    public const double EmulatedStageBudgetSeconds = 120;

    public static DTypeResult Measure(BenchModels models, BenchModels.Files files, IReadOnlySet<string> stages, ScalarType dtype, bool emulated,
        double peakGflops, int runs, int size, TextWriter log)
    {
        var result = new DTypeResult(dtype, emulated);
        int warmup = emulated ? 0 : 1;
        if (emulated) runs = 1;
        long h = size / 8;
        var flops = new Dictionary<string, double>
        {
            ["t5_encode"] = FlopCounter.T5Encoder(models.T5, 1, BenchModels.T5Tokens),
            ["tsc_step"] = FlopCounter.Tsc(models.Tsc, 2, BenchModels.T5Tokens),
            ["unet_step"] = FlopCounter.UNet(models.Unet, 2, h, h, models.Tsc.NumLatents),
            ["vae_decode"] = FlopCounter.VaeDecode(models.Vae, 1, h, h),
            ["controlnet_step"] = 0, ["controlnet_embed"] = 0,
            ["lora_merge"] = files.LoraFile != null ? ToolStages.LoraMergeFlops(files.LoraFile) : 0,
        };
        // For an emulated dtype: a stage predicted (at the measured peak, an optimistic bound) to exceed the budget is skipped.
        string? TooSlow(string key) => emulated && flops[key] / (peakGflops * 1e9) > EmulatedStageBudgetSeconds
            ? $"emulated dtype: predicted {flops[key] / (peakGflops * 1e9):F0} s or more at {peakGflops:F1} GFLOP/s" : null;
        void Timed(string key, string label, Action action)
        {
            if (TooSlow(key) is { } reason)
            {
                result.Stages.Add(new StageTiming(key, label, null, flops[key], reason));
                log.WriteLine($"  {label}: skipped ({reason})");
                return;
            }
            var t = TimingStats.Measure(runs, action, warmup);
            result.Stages.Add(new StageTiming(key, label, t, flops[key]));
            log.WriteLine(flops[key] > 0 ? $"  {label}: {t} s, {flops[key] / 1e9:F1} GFLOP → {flops[key] / t.Median / 1e9:F1} GFLOP/s" : $"  {label}: {t} s");
        }

        ProcessMemory.ResetPeak();
        // Cold start, `runs` times: all models from their safetensors files. The first load may read from disk; the
        // median is the load from the page cache; the table shows both ends.
        var loads = new List<double>();
        for (int i = 0; i < runs - 1; i++)
        {
            var sw0 = Stopwatch.StartNew();
            using (files.T5Folder != null ? T5EncoderModel.FromPretrained(files.T5Folder, dtype) : null)
            using (files.EllaFile != null ? EllaConnector.FromPretrained(files.EllaFile, dtype) : null)
            using (files.UnetFolder != null ? Modules.UNet.UNet2DConditionModel.FromPretrained(files.UnetFolder, dtype) : null)
            using (files.VaeFolder != null ? Modules.Vae.AutoencoderKL.FromPretrained(files.VaeFolder, dtype) : null)
                loads.Add(sw0.Elapsed.TotalSeconds);
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        var sw = Stopwatch.StartNew();
        var t5 = files.T5Folder != null ? T5EncoderModel.FromPretrained(files.T5Folder, dtype) : null;
        double t5Load = sw.Elapsed.TotalSeconds;
        using var ella = files.EllaFile != null ? EllaConnector.FromPretrained(files.EllaFile, dtype) : null;
        double ellaLoad = sw.Elapsed.TotalSeconds - t5Load;
        using var unet = files.UnetFolder != null ? Modules.UNet.UNet2DConditionModel.FromPretrained(files.UnetFolder, dtype) : null;
        double unetLoad = sw.Elapsed.TotalSeconds - t5Load - ellaLoad;
        using var vae = files.VaeFolder != null ? Modules.Vae.AutoencoderKL.FromPretrained(files.VaeFolder, dtype) : null;
        loads.Add(sw.Elapsed.TotalSeconds);
        using var controlnet = files.ControlNetFolder != null ? Modules.ControlNet.ControlNetModel.FromPretrained(files.ControlNetFolder, dtype) : null;
        result.Load = TimingStats.Of(loads);
        log.WriteLine($"  load: {result.Load} s (last: T5 {t5Load:F2} s, TSC {ellaLoad:F2} s, UNet {unetLoad:F2} s, VAE {loads[^1] - t5Load - ellaLoad - unetLoad:F2} s)");

        using (torch.inference_mode())
        {
            if (t5 != null)
            {
                using var ids = torch.randint(0, models.T5.VocabSize - 28, [1, BenchModels.T5Tokens], dtype: ScalarType.Int64, generator: new Generator(3));
                using var mask = torch.ones(1, BenchModels.T5Tokens, dtype: ScalarType.Int64);
                Timed("t5_encode", $"T5 encode (1×{BenchModels.T5Tokens})", () => { using var s = NewDisposeScope(); t5.forward(ids, mask); });
                // As `ella generate` does: T5 is freed once the prompts are encoded, before denoising.
                t5.Dispose();
                t5 = null;
            }
            if (ella != null)
            {
                using var features = torch.randn(2, BenchModels.T5Tokens, ella.Config.InputDim ?? ella.Config.Width, generator: new Generator(4)).to_type(dtype);
                int step = 0;
                Timed("tsc_step", $"TSC step (2×{BenchModels.T5Tokens} → 2×{ella.Config.NumLatents})", () =>
                {
                    using var s = NewDisposeScope();
                    ella.forward(features, torch.tensor(999L - 40 * step++));
                });
            }
            if (unet != null)
            {
                using var x = torch.randn(2, unet.Config.InChannels, h, h, generator: new Generator(5)).to_type(dtype);
                using var context = torch.randn(2, models.Tsc.NumLatents, unet.Config.CrossAttentionDim, generator: new Generator(6)).to_type(dtype);
                int step = 0;
                if (stages.Contains("unet") || controlnet != null)
                    Timed("unet_step", $"UNet step (CFG, 2×{h}²)", () =>
                    {
                        using var s = NewDisposeScope();
                        unet.forward(x, torch.tensor(999L - 40 * step++), context);
                    });
                if (controlnet != null)
                {
                    // As a generation runs it: the control image's embedding once, then the ControlNet at every step on
                    // the CFG batch, its residuals going into the UNet step timed above.
                    using var image = ToolStages.ControlImage(size, dtype);
                    Timed("controlnet_embed", $"ControlNet control embedding (once, 2×{size}²)", () => { using var s = NewDisposeScope(); controlnet.EmbedControl(image, dtype); });
                    using var embedding = controlnet.EmbedControl(image, dtype);
                    Timed("controlnet_step", $"ControlNet step (CFG, 2×{h}²)", () =>
                    {
                        using var s = NewDisposeScope();
                        controlnet.ForwardEmbedded(x, torch.tensor(999L - 40 * step++), context, embedding, 1.0);
                    });
                }
            }
            bool psnrAffordable = !emulated || TooSlow("unet_step") == null && TooSlow("vae_decode") == null
                && PsnrSteps * flops["unet_step"] / (peakGflops * 1e9) <= EmulatedStageBudgetSeconds;
            if (unet != null && vae != null && ella != null && stages.Contains("psnr") && psnrAffordable)
            {
                // A short full pipeline run from fixed random text features and a fixed seed, kept for the bf16/fp32 PSNR.
                using var s = NewDisposeScope();
                long width = ella.Config.InputDim ?? ella.Config.Width;
                var features = torch.randn(1, BenchModels.T5Tokens, width, generator: new Generator(11));
                var negative = torch.randn(1, 1, width, generator: new Generator(12));
                using var cond = new Pipelines.EllaConditioner(ella, [features], dtype);
                using var uncond = new Pipelines.EllaConditioner(ella, [negative], dtype);
                using var scheduler = Schedulers.SchedulerFactory.Create("dpm++2m", SchedulerConfig.StableDiffusion15());
                scheduler.SetTimesteps(PsnrSteps);
                var generator = new Generator(1234);
                var latents = Pipelines.DenoisingLoop.InitialLatents(1, unet.Config.InChannels, size / 8, size / 8, generator, scheduler.InitNoiseSigma, CPU);
                var final = Pipelines.DenoisingLoop.Run(unet, scheduler, latents, cond, uncond, 7.5, generator, dtype);
                result.Image = Pipelines.DenoisingLoop.Decode(vae, final, dtype).MoveToOuterDisposeScope();
            }
            if (vae != null)
            {
                using var z = (torch.randn(1, vae.Config.LatentChannels, h, h, generator: new Generator(7)) / vae.Config.ScalingFactor).to_type(dtype);
                Timed("vae_decode", $"VAE decode (1×{size}²)", () => { using var s = NewDisposeScope(); vae.Decode(z); });
            }
        }
        if (unet != null && files.LoraFile != null)
        {
            // Outside inference mode, as a pipeline merges: the weights stay ordinary tensors.
            using var textEncoder = files.TextEncoderFolder != null ? Modules.Clip.ClipTextModel.FromPretrained(files.TextEncoderFolder, dtype) : null;
            var (first, breakdown, merge, unmerge) = ToolStages.TimeLora(unet, textEncoder, files.LoraFile, runs);
            result.Stages.Add(new StageTiming("lora_first_merge", "LoRA first merge (reads the file)", TimingStats.Of([first]), flops["lora_merge"]));
            result.Stages.Add(new StageTiming("lora_merge", $"LoRA merge (rank {ToolStages.LoraRank}, from memory)", merge, flops["lora_merge"]));
            result.Stages.Add(new StageTiming("lora_unmerge", "LoRA unmerge (bit-exact restore)", unmerge, 0));
            log.WriteLine($"  LoRA: first merge {first:F3} s, merge {merge} s, unmerge {unmerge} s (weights restored bit for bit); first merge: {breakdown}");
        }
        result.PeakRssMb = ProcessMemory.PeakRssMb();
        return result;
    }
}
