using Ella.Modules.Ella;
using Ella.Modules.UNet;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Training;

/// <summary>Optimizer settings of a connector training run (the paper's defaults).</summary>
public sealed record OptimizerSettings(double Lr = 1e-4, double WeightDecay = 0.01, double Beta1 = 0.9, double Beta2 = 0.999,
    double Eps = 1e-8, double? MaxGradNorm = 1.0);

/// <summary>What one optimizer step did: mean loss over its micro-batches, global grad norm before clipping, the lr, and
/// with a teacher the distillation term's mean (its unweighted MSE; already included in <see cref="Loss"/> × W).</summary>
public readonly record struct StepResult(double Loss, double GradNorm, double Lr, double? Distill = null)
{
    public bool Finite => double.IsFinite(Loss) && double.IsFinite(GradNorm);
}

/// <summary>
/// One connector training step: the frozen UNet (eval mode, no parameter gradients, in the model dtype) predicts from
/// noisy latents and the connector's condition; gradients flow through the UNet's activations into the connector only.
/// Given <c>trainable</c> parameters instead (a UNet LoRA's), the connector is frozen too and only those are trained.
/// The connector keeps float32 master weights and AdamW state (torch.optim.AdamW semantics); its output is cast to the
/// model dtype (bf16 mixed precision). Gradient accumulation sums micro-batch losses divided by their count; the
/// global gradient norm is clipped as clip_grad_norm_ does. With a <see cref="ClipTeacher"/> the loss gains
/// W · MSE(prediction, the frozen UNet's prediction from the base model's CLIP condition for the same caption). A batch
/// with loss weights (<c>--foreground-weight</c>) makes both terms weighted means.
/// </summary>
public sealed class ConnectorTrainer : IDisposable
{
    readonly UNet2DConditionModel _unet;
    readonly ConnectorModule _connector;
    readonly Tensor _nullFeatures;
    readonly List<Parameter> _parameters;
    readonly ScalarType _modelDtype;
    readonly Device _device;

    public DiffusionObjective Objective { get; }
    public OptimizerSettings Settings { get; }
    public AdamW Optimizer { get; }
    public ConnectorModule Connector => _connector;
    /// <summary>The base model's text pathway as a distillation teacher, or null (the paper's objective alone).</summary>
    public ClipTeacher? Teacher { get; init; }


    /// <param name="nullFeatures">the empty caption's features ([L, D] or [1, L, D]): what a dropped caption sees</param>
    public ConnectorTrainer(UNet2DConditionModel unet, ConnectorModule connector, DiffusionObjective objective, Tensor nullFeatures,
        OptimizerSettings settings, ScalarType modelDtype = ScalarType.Float32, Device? device = null, IReadOnlyList<Parameter>? trainable = null)
    {
        _unet = unet;
        _connector = connector;
        Objective = objective;
        Settings = settings;
        _modelDtype = modelDtype;
        _device = device ?? CPU;
        unet.eval();
        foreach (var p in unet.parameters()) p.requires_grad = false;
        if (trainable is null)
        {
            connector.train();
            _parameters = connector.parameters().ToList();
        }
        else
        {
            connector.eval();
            foreach (var p in connector.parameters()) p.requires_grad = false;
            _parameters = trainable.ToList();
        }
        foreach (var p in _parameters)
        {
            if (p.dtype != ScalarType.Float32) throw new EllaException("training needs float32 master weights");
            p.requires_grad = true;
        }
        using (no_grad())
            _nullFeatures = (nullFeatures.dim() == 2 ? nullFeatures.unsqueeze(0) : nullFeatures.alias())
                .to(ScalarType.Float32, _device).DetachFromDisposeScope();
        Optimizer = optim.AdamW(_parameters, settings.Lr, settings.Beta1, settings.Beta2, settings.Eps, settings.WeightDecay);
    }

    /// <summary>
    /// One optimizer step over <paramref name="microBatches"/> at learning rate <paramref name="lr"/>. A non-finite loss
    /// or gradient norm leaves the connector and the optimizer untouched (the caller stops the run).
    /// </summary>
    public StepResult Step(IReadOnlyList<TrainingBatch> microBatches, double lr)
    {
        if (microBatches.Count == 0) throw new ArgumentException("no micro-batches");
        foreach (var g in Optimizer.ParamGroups) g.LearningRate = lr;
        using (NewDisposeScope()) Optimizer.zero_grad();
        double loss = 0, distill = 0;
        foreach (var batch in microBatches)
        {
            using var scope = NewDisposeScope();
            var (l, d) = Losses(batch);
            (l / microBatches.Count).backward();
            loss += l.item<float>() / microBatches.Count;
            if (d is not null) distill += d.item<float>() / microBatches.Count;
        }
        double norm = GradientClipping.ClipGradNorm(_parameters, Settings.MaxGradNorm);
        var result = new StepResult(loss, norm, lr, Teacher is null ? null : distill);
        if (result.Finite)
            using (NewDisposeScope()) Optimizer.step();
        using (NewDisposeScope()) Optimizer.zero_grad();
        return result;
    }

    /// <summary>The loss of one micro-batch, with its autograd graph into the connector.</summary>
    public Tensor Loss(TrainingBatch batch)
    {
        var (loss, distill) = Losses(batch);
        distill?.Dispose();
        return loss;
    }

    /// <summary>The total loss (autograd graph into the connector) and, with a teacher, the unweighted distillation MSE (detached).</summary>
    (Tensor Loss, Tensor? Distill) Losses(TrainingBatch batch)
    {
        using var scope = NewDisposeScope();
        var x0 = batch.Latents.to(ScalarType.Float32, _device);
        var noise = batch.Noise.to(ScalarType.Float32, _device);
        var t = batch.Timesteps.to(ScalarType.Int64, _device);
        var noisy = Objective.AddNoise(x0, noise, t);
        var target = Objective.Target(x0, noise, t);
        var (cond, tokenMask) = Condition(batch, t);
        var input = noisy.to_type(_modelDtype);
        var pred = _unet.Forward(input, t, cond.to_type(_modelDtype), null, tokenMask);
        var weights = batch.LossWeights?.to(ScalarType.Float32, _device);
        var loss = Objective.Loss(pred, target, t, weights);
        if (Teacher is null) return (loss.MoveToOuterDisposeScope(), null);
        if (batch.Captions is not { } captions) throw new EllaException("distillation needs each sample's caption; this batch has none");
        Tensor teacherPred;
        using (no_grad())
            teacherPred = _unet.forward(input, t, Teacher.Condition(captions, batch.Drop, _device).to_type(_modelDtype));
        var distill = weights is null ? nn.functional.mse_loss(pred.to_type(ScalarType.Float32), teacherPred.to_type(ScalarType.Float32))
            : DiffusionObjective.WeightedMse(pred, teacherPred, weights);
        var total = loss + distill * Teacher.Weight;
        return (total.MoveToOuterDisposeScope(), distill.detach().MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The connector's condition per row ([B, tokens, width], float32): a dropped row reads the null features. Rows of
    /// equal length run as one batch; a connector whose token count follows the text length (MLP) gets its shorter rows
    /// zero-padded to the longest, and the mask of real tokens ([B, tokens], null without padding) that keeps the UNet's
    /// cross-attention off the padding, as in sampling (<see cref="Pipelines.TokenPadding"/>).
    /// </summary>
    (Tensor Condition, Tensor? TokenMask) Condition(TrainingBatch batch, Tensor t)
    {
        using var scope = NewDisposeScope();
        int rows = batch.Rows;
        var features = new Tensor[rows];
        for (int r = 0; r < rows; r++)
        {
            var f = batch.Drop[r] ? _nullFeatures : batch.TextFeatures[r];
            if (f.dim() == 2) f = f.unsqueeze(0);
            features[r] = f.to(ScalarType.Float32, _device);
        }
        var outputs = new Tensor[rows];
        foreach (var group in Enumerable.Range(0, rows).GroupBy(r => features[r].shape[1]))
        {
            var idx = group.ToArray();
            var input = idx.Length == 1 ? features[idx[0]] : cat(idx.Select(r => features[r]).ToArray(), 0);
            var times = idx.Length == rows ? t : t.index_select(0, tensor(idx.Select(i => (long)i).ToArray(), device: _device));
            var output = _connector.forward(input, times);
            for (int i = 0; i < idx.Length; i++) outputs[idx[i]] = output[i..(i + 1)];
        }
        var (condition, mask) = Pipelines.TokenPadding.Join(outputs.Select(o => (o, (Tensor?)null)).ToArray());
        return (condition.MoveToOuterDisposeScope(), mask?.MoveToOuterDisposeScope());
    }

    public void Dispose()
    {
        Optimizer.Dispose();
        _nullFeatures.Dispose();
    }
}
