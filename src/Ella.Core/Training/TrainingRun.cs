using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Ella.Configs;
using Ella.Imaging;
using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.Schedulers;
using Ella.Text;
using Ella.TextEncoders;
using Ella.Training.Data;
using Ella.Training.UNetLora;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Training;

/// <summary>How a run ended.</summary>
public enum TrainingOutcome { Completed, Interrupted, Diverged }

/// <summary>
/// An <c>ella train</c> run: loads the frozen UNet (and, without a cache, the VAE and text encoder), makes or loads the
/// connector, checks every shape before the first step, then trains for <c>--max-steps</c> optimizer steps with
/// checkpoints, a JSONL log, console progress and validation grids. Resumes exactly from a checkpoint: weights, AdamW
/// state, LR schedule position, the noise generator and the data position.
/// </summary>
public sealed class TrainingRun
{
    readonly TrainingOptions _o;
    readonly TextWriter _log;

    TrainingRun(TrainingOptions options, TextWriter log)
    {
        _o = options;
        _log = log;
    }

    public static TrainingOutcome Run(TrainingOptions options, TextWriter log, CancellationToken cancellation = default) =>
        new TrainingRun(options, log).Execute(cancellation);

    TrainingOutcome Execute(CancellationToken cancellation)
    {
        Native.TorchRuntime.Initialize();
        _o.Validate();
        string output = _o.Output ?? _o.Resume!;
        (string Path, TrainingState State)? resume = _o.Resume is null ? null : TrainingCheckpoint.Latest(_o.Resume);
        if (resume is { } resumed && resumed.State.Target != _o.Target)
        {
            if (_o.Target != TrainingOptions.TargetConnector)
                throw new EllaException($"--resume {_o.Resume}: that run trains a {resumed.State.Target}, not a {_o.Target}");
            _o.Target = resumed.State.Target; // --resume alone continues whatever the run trains
        }
        if (resume is { State.DType: { } recorded } && recorded != DTypeName(_o.DType))
        {
            if (!_o.DTypeAuto)
                throw new EllaException($"--dtype {DTypeName(_o.DType)}: the run in {_o.Resume} trains in {recorded}; resume it with --dtype {recorded} (or auto), or start a new run");
            _o.DType = Hardware.DTypeChoice.Parse(recorded);
            _log.WriteLine($"--dtype auto: resuming in {recorded}, the dtype the run was started with");
        }
        if (resume is { State: var resumedState })
        {
            // --resume alone continues the run's own objective; another value than the recorded one is refused.
            _o.Distill = KeepRecorded("--distill", _o.Distill, resumedState.Distill ?? 0, off: 0, "the objective");
            _o.ForegroundWeight = KeepRecorded("--foreground-weight", _o.ForegroundWeight, resumedState.ForegroundWeight ?? 1, off: 1, "the weighting");
        }
        bool lora = _o.TrainsLora;
        string? init = _o.Init ?? (lora ? resume?.State.Init : null);

        // The text encoder: --text-encoder, else the cache's, else t5; a cache made with another encoder is refused.
        var cache = _o.Cache is null ? null : FeatureCache.Open(_o.Cache, m => _log.WriteLine(m));
        ISampleSource? cached = cache is null ? null : new CachedSampleSource(cache);
        using var cachedScope = cached;
        TextEncoderKind? cacheKind = cache is null ? null : TextEncoderKinds.FromRecordedName(cache.Settings.TextEncoder);
        if (_o.TextEncoder is { } given && cacheKind is { } made && given != made)
            throw new EllaException($"--cache {_o.Cache}: the features were made with the {TextEncoderKinds.Name(made)} text encoder, but --text-encoder is {TextEncoderKinds.Name(given)}; " +
                                    $"train with --text-encoder {TextEncoderKinds.Name(made)}, or cache the data again with 'ella train cache --text-encoder {TextEncoderKinds.Name(given)}'");
        var kind = _o.TextEncoder ?? cacheKind ?? TextEncoderKind.T5;
        string kindName = TextEncoderKinds.Name(kind);
        bool needEncoder = cached is null || _o.ValidationPrompts is not null;
        if (needEncoder && kind == TextEncoderKind.T5 && _o.T5 is null)
            throw new EllaException(cached is null ? "--data needs --t5 to encode the captions with the t5 text encoder (or choose --text-encoder minilm|arctic-xs)"
                : $"--validation-prompts needs --t5: the cache {_o.Cache} holds t5 features");
        if (resume is { } previous && !lora && ConnectorMetadata.TextEncoderKindOf(Path.Combine(previous.Path, "connector.safetensors")) is { } trainedOn && trainedOn != kind)
            throw new EllaException($"--resume {_o.Resume}: the run's connector reads {TextEncoderKinds.Name(trainedOn)} features, but this run's text encoder is {kindName}");
        if (resume is null && !lora && _o.Init is not null && ConnectorMetadata.TextEncoderKindOf(_o.Init) is { } initOn && initOn != kind)
            _log.WriteLine($"warning: --init {_o.Init} was trained on {TextEncoderKinds.Name(initOn)} features; this run trains it on {kindName} features");
        if (lora && init is not null && ConnectorMetadata.TextEncoderKindOf(ModelLocator.EllaFile(init)) is { } readsKind && readsKind != kind)
            throw new EllaException($"--init {init}: the connector reads {TextEncoderKinds.Name(readsKind)} features, but this run's text encoder is {kindName}");

        if (kind != TextEncoderKind.T5 && _o.T5 is not null) _log.WriteLine($"warning: --t5 {_o.T5} is not used: the text encoder is {kindName}");

        bool distill = _o.Distill > 0;
        if (distill && !HasClip(_o.StableDiffusion!))
            throw new EllaException($"--distill {_o.Distill.ToString(CultureInfo.InvariantCulture)}: the teacher is the model's own CLIP text encoder, but --sd {_o.StableDiffusion} has no text_encoder/ and tokenizer/ folders");
        using var sd = StableDiffusionModel.Load(_o.StableDiffusion!, _o.DType, _o.Device, withTextEncoder: distill);
        var data = cached is null ? ImageCaptionDatasets.Open(_o.Data, new ImagePreprocessing(_o.Resolution, _o.RandomCrop, _o.RandomFlip), m => _log.WriteLine(m)) : null;
        ITextFeatureEncoder? textEncoder = needEncoder ? TextEncoderFactory.Create(kind, kind == TextEncoderKind.T5 ? _o.T5 : null, _o.DType, _o.Device) : null;
        ISampleSource source;
        if (cached is not null)
            source = cached;
        else
        {
            source = new LiveSampleSource(data!, sd.Vae, textEncoder!, _o.DType, _o.Device, _o.MaxLength, _o.Seed);
            textEncoder = null; // the live source owns (and disposes) it
        }
        using var liveScope = cached is null ? source : null;
        if (source.Count == 0) throw new EllaException($"{source.Description}: no samples");
        if (_o.ForegroundWeight != 1 && !source.HasMasks)
            throw new EllaException(string.Create(CultureInfo.InvariantCulture, $"--foreground-weight {_o.ForegroundWeight}: {(cached is null ? $"--data {string.Join(", ", _o.Data)}" : $"--cache {_o.Cache}")} has no loss masks; ") +
                                    "name a \"mask\" image per sample in metadata.jsonl (white = foreground; 'ella world sample --masks' writes them) and cache the data again");
        var promptEncoder = textEncoder ?? (source as LiveSampleSource)?.TextEncoder;
        if (promptEncoder is not null && promptEncoder.HiddenSize != source.TextFeatureDim)
            throw new EllaException($"--cache {_o.Cache}: the cached text features are {source.TextFeatureDim} wide but the {kindName} text encoder ({promptEncoder.Name}) gives {promptEncoder.HiddenSize}-wide ones");

        // Validation prompts are encoded once, before any training.
        var validation = new List<(string Prompt, Tensor Features)>();
        if (_o.ValidationPrompts is not null)
        {
            var prompts = File.ReadAllLines(_o.ValidationPrompts).Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
            if (prompts.Count == 0) throw new EllaException($"--validation-prompts {_o.ValidationPrompts}: no prompts in the file");
            foreach (var p in prompts)
            {
                using var enc = promptEncoder!.Encode(p, TokenLength.Flexible, _o.MaxLength);
                validation.Add((p, enc.Features.to(ScalarType.Float32, _o.Device).DetachFromDisposeScope()));
            }
        }
        if (cached is not null) { textEncoder?.Dispose(); textEncoder = null; } // not needed any more
        var connectorMetadata = ConnectorMetadata.For(kind);

        var unet = sd.Unet;
        int cross = unet.Config.CrossAttentionDim;
        ConnectorModule connector;
        string connectorFrom;
        if (resume is { } r && !lora)
        {
            connector = Connectors.FromPretrained(Path.Combine(r.Path, "connector.safetensors"), ScalarType.Float32, _o.Device);
            connectorFrom = r.Path;
        }
        else if (init is not null)
        {
            connector = Connectors.FromPretrained(ModelLocator.EllaFile(init), ScalarType.Float32, _o.Device);
            connectorFrom = init;
        }
        else
        {
            var config = new EllaConnectorConfig
            {
                ConnectorType = _o.ConnectorType, InputDim = source.TextFeatureDim, Width = cross, Layers = _o.Blocks, TimeEmbedDim = cross,
            };
            if (cross % config.Heads != 0) config.Heads = Enumerable.Range(1, 8).Reverse().First(h => cross % h == 0);
            manual_seed(_o.Seed);
            connector = Connectors.Create(config);
            if (_o.Device.type != DeviceType.CPU) connector.to(_o.Device);
            connectorFrom = $"a fresh {_o.ConnectorType} connector";
        }
        using var connectorScope = connector;
        int width = connector.Config.ConditionWidth, inputDim = connector.Config.InputDim ?? connector.Config.Width;
        if (width != cross)
            throw new EllaException($"{connectorFrom}: the connector outputs {width}-wide tokens but the UNet's cross_attention_dim is {cross}");
        if (inputDim != source.TextFeatureDim)
            throw new EllaException($"{connectorFrom}: the connector reads {inputDim}-wide text features but the text encoder gives {source.TextFeatureDim}");

        // A UNet LoRA: hooks on the UNet's attention projections; the connector stays as loaded.
        using var adapter = lora ? new UNetLoraAdapter(unet, _o.Rank, _o.LoraAlpha ?? _o.Rank, new Generator((ulong)_o.Seed + 1), _o.Device) : null;
        if (adapter != null && resume is { } fromCheckpoint) adapter.Load(Path.Combine(fromCheckpoint.Path, "lora.safetensors"));
        var objective = DiffusionObjective.FromConfig(sd.SchedulerConfig, _o.SnrGamma);
        var settings = new OptimizerSettings(_o.Lr, _o.WeightDecay, MaxGradNorm: _o.MaxGradNorm);
        using var trainer = new ConnectorTrainer(unet, connector, objective, source.NullTextFeatures, settings, _o.DType, _o.Device, adapter?.Parameters)
        {
            Teacher = distill ? new ClipTeacher(sd.TextEncoder!, sd.Tokenizer!, _o.Distill) { Rewrite = _o.TeacherCaption } : null,
        };
        var loraMetadata = new Dictionary<string, string>(connectorMetadata) { ["ella_connector"] = init is null ? "" : Path.GetFileName(Path.GetFullPath(init).TrimEnd('/')) };
        Action<string> writeWeights = adapter != null
            ? dir => adapter.Save(Path.Combine(dir, "lora.safetensors"), loraMetadata)
            : dir => connector.Save(Path.Combine(dir, "connector.safetensors"), connectorMetadata);
        var schedule = new LearningRateSchedule(_o.LrSchedule, _o.Lr, _o.WarmupSteps, _o.MaxSteps);
        var rng = new Generator((ulong)_o.Seed);
        var state = new TrainingState
        {
            Seed = _o.Seed, LrSchedule = _o.LrSchedule, Lr = _o.Lr, WarmupSteps = _o.WarmupSteps, MaxSteps = _o.MaxSteps,
            Batch = _o.Batch, GradAccum = _o.GradAccum, Target = _o.Target, Init = lora && init is not null ? Path.GetFullPath(init) : null,
            DType = DTypeName(_o.DType), Distill = _o.Distill > 0 ? _o.Distill : null,
            ForegroundWeight = _o.ForegroundWeight != 1 ? _o.ForegroundWeight : null,
        };
        if (resume is { } res)
        {
            TrainingCheckpoint.Restore(res.Path, trainer.Optimizer, rng);
            state.Step = res.State.Step;
            state.DataPosition = res.State.DataPosition;
            state.LastLoss = res.State.LastLoss;
            if (res.State.Seed != _o.Seed) _log.WriteLine($"warning: resuming a run made with --seed {res.State.Seed} under --seed {_o.Seed}: the data order follows the new seed");
        }
        Directory.CreateDirectory(output);
        string logPath = Path.Combine(output, "log.jsonl");
        TrimLog(logPath, state.Step);
        var stream = new SampleStream(source, _o.Seed, state.DataPosition);

        string what = adapter != null
            ? $"a rank-{adapter.Rank} UNet LoRA ({adapter.Parameters.Sum(p => p.NumberOfElements):N0} parameters on {adapter.Parameters.Count / 2} attention projections, alpha {adapter.Alpha}) with the frozen {connector.Config.ConnectorType} connector from {connectorFrom}"
            : $"{connector.Config.ConnectorType} connector ({connector.parameters().Sum(p => p.NumberOfElements):N0} parameters, from {connectorFrom})";
        _log.WriteLine($"training {what} " +
            $"on {source.Description} ({kindName} text features); UNet {sd.Name} in {DTypeName(_o.DType)}; {_o.MaxSteps} steps × {_o.Batch * _o.GradAccum} samples; output {output}");
        if (distill) _log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"distillation: loss = objective + {_o.Distill} × MSE(prediction, the UNet's prediction from {sd.Name}'s own CLIP text encoder on the same caption)"));
        if (_o.ForegroundWeight != 1) _log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"foreground weight: each latent element's squared error counts 1 + {_o.ForegroundWeight - 1} × its loss mask"));
        if (resume is not null) _log.WriteLine($"resumed from {resume.Value.Path} at step {state.Step}");
        string? lastCheckpoint = resume?.Path;
        int lastSaved = state.Step;
        var runClock = Stopwatch.StartNew();
        int startStep = state.Step;
        try
        {
            while (state.Step < _o.MaxSteps)
            {
                if (cancellation.IsCancellationRequested)
                {
                    if (state.Step > lastSaved) lastCheckpoint = SaveCheckpoint(output, state, trainer, rng, writeWeights);
                    _log.WriteLine($"interrupted at step {state.Step}; checkpoint {lastCheckpoint ?? "(none: no step finished)"}; continue with --resume {output}");
                    return TrainingOutcome.Interrupted;
                }
                var clock = Stopwatch.StartNew();
                var micro = new List<TrainingBatch>();
                StepResult result;
                try
                {
                    for (int a = 0; a < _o.GradAccum; a++) micro.Add(NextBatch(stream, source, objective, rng));
                    result = trainer.Step(micro, schedule.At(state.Step));
                    // libtorch 2.10 on the CPU sometimes returns NaN gradients for a finite loss (a step leaves the
                    // connector untouched then): the same micro-batches are computed again before giving up.
                    for (int attempt = 2; attempt <= 4 && !result.Finite && double.IsFinite(result.Loss); attempt++)
                    {
                        _log.WriteLine($"step {state.Step + 1}: non-finite gradients for a finite loss; computing the step again (attempt {attempt})");
                        result = trainer.Step(micro, schedule.At(state.Step));
                    }
                }
                finally
                {
                    foreach (var b in micro) b.Dispose();
                }
                int step = state.Step + 1;
                if (!result.Finite)
                {
                    _log.WriteLine($"error: step {step}: the loss is {result.Loss.ToString(CultureInfo.InvariantCulture)} (gradient norm {result.GradNorm.ToString(CultureInfo.InvariantCulture)}): training diverged and stopped; " +
                        $"the last good checkpoint is {lastCheckpoint ?? "(none)"}; try a lower --lr or --max-grad-norm");
                    return TrainingOutcome.Diverged;
                }
                state.Step = step;
                state.DataPosition = stream.Position;
                state.LastLoss = result.Loss;
                double seconds = clock.Elapsed.TotalSeconds;
                double samplesPerS = _o.Batch * _o.GradAccum / Math.Max(1e-9, seconds);
                AppendLog(logPath, step, result, samplesPerS);
                double perStep = runClock.Elapsed.TotalSeconds / (step - startStep);
                _log.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {step}/{_o.MaxSteps}  loss {result.Loss:F5}{(result.Distill is { } dm ? $" (distill {dm:F5})" : "")}  grad_norm {result.GradNorm:F4}  lr {result.Lr:E2}  {samplesPerS:F2} samples/s  ETA {Duration(perStep * (_o.MaxSteps - step))}"));
                if (step % _o.SaveEvery == 0 || step == _o.MaxSteps)
                {
                    lastCheckpoint = SaveCheckpoint(output, state, trainer, rng, writeWeights);
                    lastSaved = step;
                }
                if (validation.Count > 0 && ((_o.ValidateEvery > 0 && step % _o.ValidateEvery == 0) || step == _o.MaxSteps))
                    Validate(output, step, sd, connector, validation, source.NullTextFeatures);
            }
            string final = Path.Combine(output, adapter != null ? "lora.safetensors" : "connector.safetensors");
            writeWeights(output);
            _log.WriteLine($"done: {state.Step} steps; {(adapter != null ? "LoRA" : "connector")} {final}" + (source.Skipped > 0 ? $"; {source.Skipped} samples skipped" : ""));
            return TrainingOutcome.Completed;
        }
        finally
        {
            foreach (var (_, f) in validation) f.Dispose();
            textEncoder?.Dispose();
        }
    }

    string SaveCheckpoint(string output, TrainingState state, ConnectorTrainer trainer, Generator rng, Action<string> writeWeights)
    {
        string path = TrainingCheckpoint.Save(output, state, writeWeights, trainer.Optimizer, rng, _o.KeepLast);
        _log.WriteLine($"saved {path}");
        return path;
    }

    /// <summary>Draws one micro-batch: samples in data order, posterior samples, noise, timesteps and caption drops.</summary>
    TrainingBatch NextBatch(SampleStream stream, ISampleSource source, DiffusionObjective objective, Generator rng)
    {
        using var scope = NewDisposeScope();
        var samples = new List<PosteriorSample>();
        try
        {
            for (int i = 0; i < _o.Batch; i++) samples.Add(stream.Next());
            var latents = stack(samples.Select(s => s.Mean + s.Std * randn(s.Mean.shape, generator: rng)).ToArray()) * source.ScalingFactor;
            var noise = randn(latents.shape, generator: rng);
            var timesteps = randint(0, objective.NumTrainTimesteps, [_o.Batch], dtype: ScalarType.Int64, generator: rng);
            var drop = rand([_o.Batch], generator: rng).data<float>().Select(u => u < _o.CaptionDropout).ToArray();
            var text = samples.Select(s => s.TextFeatures.alias().DetachFromDisposeScope()).ToList();
            // a sample without a mask is all background: its elements count 1
            var weights = _o.ForegroundWeight == 1 ? null
                : 1 + (_o.ForegroundWeight - 1) * stack(samples.Select(s => s.Mask ?? zeros([1, s.Mean.shape[1], s.Mean.shape[2]])).ToArray());
            return new TrainingBatch(latents.DetachFromDisposeScope(), noise.DetachFromDisposeScope(), timesteps.DetachFromDisposeScope(), text, drop,
                samples.Select(s => s.Caption).ToList(), weights?.DetachFromDisposeScope());
        }
        finally
        {
            foreach (var s in samples) s.Dispose();
        }
    }

    /// <summary>A grid of images, one per validation prompt with a fixed seed (seed + i), under OUT/validation/.</summary>
    void Validate(string output, int step, StableDiffusionModel sd, ConnectorModule connector, List<(string Prompt, Tensor Features)> prompts, Tensor nullFeatures)
    {
        var clock = Stopwatch.StartNew();
        connector.eval();
        var cells = new List<RgbImage>();
        try
        {
            using var mode = inference_mode();
            int f = sd.Vae.Config.DownscaleFactor;
            for (int i = 0; i < prompts.Count; i++)
            {
                using var scope = NewDisposeScope();
                using var cond = new EllaConditioner(connector, [prompts[i].Features], ScalarType.Float32);
                using var uncond = new EllaConditioner(connector, [nullFeatures.unsqueeze(0).to(ScalarType.Float32, _o.Device)], ScalarType.Float32);
                using var scheduler = SchedulerFactory.Create("dpm++2m", sd.SchedulerConfig);
                scheduler.SetTimesteps(_o.ValidationSteps);
                var generator = new Generator((ulong)(_o.Seed + i));
                var latents = DenoisingLoop.InitialLatents(1, sd.Unet.Config.InChannels, _o.Resolution / f, _o.Resolution / f, generator, scheduler.InitNoiseSigma, _o.Device);
                var final = DenoisingLoop.Run(sd.Unet, scheduler, latents, cond, uncond, _o.ValidationGuidance, generator, _o.DType);
                var image = DenoisingLoop.Decode(sd.Vae, final, _o.DType).cpu();
                cells.Add(RgbImage.FromTensor(image[0]));
            }
        }
        finally
        {
            connector.train();
        }
        string dir = Path.Combine(output, "validation");
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, $"step-{step:D6}.png");
        var grid = ImageGrid.Make(cells, Math.Min(4, cells.Count), prompts.Select(p => p.Prompt.Length > 40 ? p.Prompt[..40] : p.Prompt).ToList(), gap: 4);
        grid.SavePng(path, new Dictionary<string, string> { ["parameters"] = $"validation step {step}; seeds {_o.Seed}..{_o.Seed + prompts.Count - 1}; {_o.ValidationSteps} steps DPM++ 2M, CFG {_o.ValidationGuidance}" });
        _log.WriteLine($"validation grid {path} ({clock.Elapsed.TotalSeconds:F1} s)");
    }

    static void AppendLog(string path, int step, StepResult r, double samplesPerS)
    {
        var entry = new Dictionary<string, object>
        {
            ["step"] = step, ["loss"] = r.Loss, ["grad_norm"] = r.GradNorm, ["lr"] = r.Lr, ["samples_per_s"] = Math.Round(samplesPerS, 4),
        };
        if (r.Distill is { } d) entry["distill"] = d;
        string line = JsonSerializer.Serialize(entry);
        File.AppendAllText(path, line + "\n");
    }

    /// <summary>On resume, drops log lines of steps after the checkpoint (they will be run again).</summary>
    public static void TrimLog(string path, int step)
    {
        if (!File.Exists(path)) return;
        var keep = File.ReadAllLines(path).Where(l =>
        {
            try { using var d = JsonDocument.Parse(l); return d.RootElement.GetProperty("step").GetInt32() <= step; }
            catch (Exception) { return false; }
        }).ToList();
        File.WriteAllLines(path, keep);
    }

    /// <summary>A diffusers folder with a CLIP text encoder and tokenizer (what a <see cref="ClipTeacher"/> needs).</summary>
    static bool HasClip(string model) => Directory.Exists(model)
        && File.Exists(Path.Combine(model, "text_encoder", "config.json")) && Directory.Exists(Path.Combine(model, "tokenizer"));

    static string DTypeName(ScalarType t) => t == ScalarType.BFloat16 ? "bf16" : t == ScalarType.Float16 ? "fp16" : "fp32";

    /// <summary>
    /// A loss setting recorded in a resumed run's state: a flag left at its <paramref name="off"/> value takes the recorded
    /// value (with a log line), another value than the recorded one is refused naming both.
    /// </summary>
    double KeepRecorded(string flag, double given, double recorded, double off, string what)
    {
        if (given == recorded) return given;
        if (given != off)
            throw new EllaException(string.Create(CultureInfo.InvariantCulture,
                $"{flag} {given}: the run in {_o.Resume} trains with {flag} {recorded}; resume it with that value (or without the flag), or start a new run"));
        _log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"resuming with {flag} {recorded}, {what} the run was started with"));
        return recorded;
    }

    public static string Duration(double seconds)
    {
        if (double.IsNaN(seconds) || double.IsInfinity(seconds)) return "?";
        var t = TimeSpan.FromSeconds(Math.Max(0, seconds));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : t.TotalMinutes >= 1 ? $"{t.Minutes}m{t.Seconds:D2}s" : $"{t.TotalSeconds:F0}s";
    }
}

/// <summary>
/// The data order: epoch e visits the samples in randperm(N) drawn from a generator seeded with seed + e; a position
/// counts every sample taken (skipped ones too), so a run resumes at the same place.
/// </summary>
public sealed class SampleStream(ISampleSource source, long seed, long position)
{
    long[]? _order;
    long _epoch = -1;

    public long Position { get; private set; } = position;

    public PosteriorSample Next()
    {
        int n = source.Count;
        for (int tries = 0; tries <= n; tries++)
        {
            long epoch = Position / n;
            if (epoch != _epoch)
            {
                using var perm = randperm(n, generator: new Generator((ulong)(seed + epoch)));
                _order = perm.data<long>().ToArray();
                _epoch = epoch;
            }
            int index = (int)_order![Position % n];
            long at = Position++;
            var sample = source.TryLoad(index, at);
            if (sample is not null) return sample;
        }
        throw new EllaException($"{source.Description}: every sample was skipped; nothing to train on");
    }
}
