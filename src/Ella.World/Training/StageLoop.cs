using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Ella.Training;
using Ella.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>
/// What a stage trains: named modules, each saved as <c>&lt;name&gt;.safetensors</c> in its checkpoints. With a
/// <paramref name="Compute"/> copy the step's forward and backward run on that copy (mixed precision) while
/// <paramref name="Module"/> stays the float32 master.
/// </summary>
public sealed record TrainableModule(string Name, nn.Module Module, LowPrecisionCopy? Compute = null);

/// <summary>The settings of one stage of the world recipe.</summary>
public sealed record StageSettings(int MaxSteps, int Batch, double Lr, int WarmupSteps, int SaveEvery, long Seed,
    double WeightDecay = 0.01, double? MaxGradNorm = 1.0, string Schedule = "cosine", double? EmaDecay = null);

/// <summary>
/// The training loop of the recipe's first two stages (VAE; CLIP + UNet): AdamW over every parameter of the trainable
/// modules, the LR schedule recomputed from the step, global-norm clipping, <c>DIR/log.jsonl</c>, a loss plot, and
/// checkpoints <c>DIR/checkpoint-&lt;step&gt;/</c> (weights, AdamW state, the generator, <c>state.json</c>) from which a
/// run resumes exactly, with the parameters' exponential moving average when the stage keeps one (then the average is
/// what the stage ends with). Modules with a low-precision compute copy train in mixed precision. One dispose scope per step.
/// </summary>
public sealed class StageLoop(string dir, string title, StageSettings settings, TextWriter log)
{
    /// <summary>Computes the loss of step <c>step</c> (0-based) with its autograd graph; draws randomness from the generator.</summary>
    public delegate Tensor StepLoss(int step, Generator rng);

    const int MaxAttempts = 4, MaxSkippedInARow = 10;

    public static bool IsDone(string dir) => File.Exists(Path.Combine(dir, "done.json"));

    /// <summary>Trains to <see cref="StageSettings.MaxSteps"/> (resuming from the newest checkpoint in the folder) unless the stage is done.</summary>
    public void Run(IReadOnlyList<TrainableModule> modules, StepLoss loss, CancellationToken cancellation)
    {
        Directory.CreateDirectory(dir);
        var parameters = modules.SelectMany(m => m.Module.parameters()).ToList();
        foreach (var p in parameters) p.requires_grad = true;
        foreach (var m in modules) { m.Module.train(); m.Compute?.Copy.train(); }
        using var optimizer = optim.AdamW(parameters, settings.Lr, 0.9, 0.999, 1e-8, settings.WeightDecay);
        var schedule = new LearningRateSchedule(settings.Schedule, settings.Lr, settings.WarmupSteps, settings.MaxSteps);
        var rng = new Generator((ulong)settings.Seed);
        using var ema = settings.EmaDecay is { } decay ? new ParameterEma(modules, decay) : null;
        int step = 0;
        var checkpoints = TrainingCheckpoint.List(dir);
        if (checkpoints.Count > 0)
        {
            var (s, path) = checkpoints[^1];
            foreach (var m in modules)
            {
                using var source = SafetensorsFile.Open(Path.Combine(path, m.Name + ".safetensors"));
                StateDictLoader.Load(m.Module, source);
            }
            optimizer.load_state_dict(Path.Combine(path, "optimizer.bin"));
            using (var f = SafetensorsFile.Open(Path.Combine(path, "rng.safetensors")))
            using (var state = f.Read("generator"))
                rng.set_state(state);
            ema?.Load(Path.Combine(path, ParameterEma.FileName));
            step = s;
            log.WriteLine($"[{title}] resumed from {path}");
        }
        string logPath = Path.Combine(dir, "log.jsonl");
        TrainingRun.TrimLog(logPath, step);
        long count = parameters.Sum(p => p.numel());
        log.WriteLine($"[{title}] {count:N0} parameters; steps {step}/{settings.MaxSteps}, batch {settings.Batch}, lr {settings.Lr} {settings.Schedule}");
        var clock = Stopwatch.StartNew();
        int start = step, skipped = 0, skippedInARow = 0;
        if (Environment.GetEnvironmentVariable("ELLA_DETECT_ANOMALY") == "1") autograd.set_detect_anomaly(true);
        while (step < settings.MaxSteps)
        {
            if (cancellation.IsCancellationRequested)
            {
                Save(modules, optimizer, rng, ema, step);
                throw new OperationCanceledException($"[{title}] interrupted at step {step}; run the same command again to resume");
            }
            var stepClock = Stopwatch.StartNew();
            double lr = schedule.At(step);
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;
            double value = double.NaN, norm = double.NaN;
            // libtorch 2.10 on this CPU sometimes returns NaN gradients for a finite loss (seen at random steps, never
            // under anomaly detection): the same batch is computed again, up to MaxAttempts times.
            using var rngBefore = rng.get_state();
            for (int attempt = 1; ; attempt++)
            {
                using (NewDisposeScope())
                {
                    optimizer.zero_grad();
                    foreach (var m in modules) m.Compute?.PullWeights();
                    var l = loss(step, rng);
                    l.backward();
                    foreach (var m in modules) m.Compute?.PushGradients();
                    value = l.item<float>();
                    norm = GradientClipping.ClipGradNorm(parameters, settings.MaxGradNorm);
                    if (double.IsFinite(value) && double.IsFinite(norm))
                    {
                        skippedInARow = 0;
                        optimizer.step();
                        optimizer.zero_grad();
                        break;
                    }
                    if (double.IsFinite(value) && attempt < MaxAttempts)
                    {
                        log.WriteLine($"[{title}] step {step + 1}: non-finite gradients for a finite loss; computing the step again (attempt {attempt + 1})");
                        rng.set_state(rngBefore);
                        continue;
                    }
                    if (double.IsFinite(value) && ++skippedInARow < MaxSkippedInARow)
                    {
                        // The weights stay as they are; the step (its data and noise) is given up.
                        log.WriteLine($"[{title}] step {step + 1}: non-finite gradients {MaxAttempts} times for a finite loss; step skipped");
                        optimizer.zero_grad();
                        skipped++;
                        break;
                    }
                    var names = modules.SelectMany(m => m.Module.named_parameters().Select(p => (Name: $"{m.Name}.{p.name}", p.parameter)))
                        .Where(p => p.parameter.grad is { } g && !g.isfinite().all().item<bool>()).Select(p => p.Name).ToList();
                    if (names.Count > 8) names = names.Take(4).Append($"… ({names.Count} in all)").Concat(names.TakeLast(3)).ToList();
                    throw new EllaException($"[{title}] step {step + 1}: the loss is {value} (gradient norm {norm}" +
                        (names.Count > 0 ? $"; non-finite gradients in {string.Join(", ", names)}" : "") + $"): training diverged; delete {dir} and lower the learning rate");
                }
            }
            step++;
            ema?.Update(step);
            double seconds = stepClock.Elapsed.TotalSeconds;
            File.AppendAllText(logPath, JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["step"] = step, ["loss"] = value, ["grad_norm"] = double.IsFinite(norm) ? norm : -1, ["lr"] = lr, ["seconds"] = Math.Round(seconds, 4),
            }) + "\n");
            if (step % 10 == 0 || step == settings.MaxSteps || step == start + 1)
            {
                double perStep = clock.Elapsed.TotalSeconds / (step - start);
                log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[{title}] step {step}/{settings.MaxSteps}  loss {value:F5}  grad_norm {norm:F3}  lr {lr:E2}  {seconds:F2} s/step  ETA {TrainingRun.Duration(perStep * (settings.MaxSteps - step))}"));
            }
            if (step % settings.SaveEvery == 0 || step == settings.MaxSteps) Save(modules, optimizer, rng, ema, step);
        }
        LossPlot.Render(LossPlot.ReadLog(logPath), Path.Combine(dir, "loss.png"));
        File.WriteAllText(Path.Combine(dir, "done.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["steps"] = step, ["seconds_this_run"] = Math.Round(clock.Elapsed.TotalSeconds, 1),
        }));
        if (ema != null)
        {
            ema.CopyToParameters();
            log.WriteLine($"[{title}] weights: the exponential moving average (decay {settings.EmaDecay})");
        }
        foreach (var m in modules) { m.Module.eval(); m.Compute?.Copy.eval(); }
        log.WriteLine($"[{title}] done: {step} steps ({TrainingRun.Duration(clock.Elapsed.TotalSeconds)} in this run" + (skipped > 0 ? $"; {skipped} skipped" : "") + ")");
    }

    void Save(IReadOnlyList<TrainableModule> modules, AdamW optimizer, Generator rng, ParameterEma? ema, int step)
    {
        if (step == 0) return;
        string final = TrainingCheckpoint.PathFor(dir, step);
        string tmp = Path.Combine(dir, $".checkpoint-{step}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        foreach (var m in modules) SafetensorsWriter.Save(Path.Combine(tmp, m.Name + ".safetensors"), m.Module.state_dict());
        optimizer.save_state_dict(Path.Combine(tmp, "optimizer.bin"));
        ema?.Save(Path.Combine(tmp, ParameterEma.FileName));
        using (var state = rng.get_state()) SafetensorsWriter.Save(Path.Combine(tmp, "rng.safetensors"), [new("generator", state)]);
        File.WriteAllText(Path.Combine(tmp, "state.json"), JsonSerializer.Serialize(new TrainingState { Step = step, Seed = settings.Seed, MaxSteps = settings.MaxSteps, Batch = settings.Batch, Lr = settings.Lr, LrSchedule = settings.Schedule, WarmupSteps = settings.WarmupSteps }));
        if (Directory.Exists(final)) Directory.Delete(final, true);
        Directory.Move(tmp, final);
        foreach (var old in TrainingCheckpoint.List(dir).SkipLast(2)) Directory.Delete(old.Path, true);
    }
}
