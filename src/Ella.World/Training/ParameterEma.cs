using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>
/// An exponential moving average of the trainable parameters (diffusers' <c>EMAModel</c> semantics: after optimizer step
/// n (1-based) the shadow becomes <c>decay·shadow + (1 − decay)·θ</c> with <c>decay = min(max_decay, (1 + n)/(10 + n))</c>).
/// A small diffusion model sampled from its raw weights draws the noise of its last few hundred updates; the average
/// draws what they agree on. Saved in every checkpoint as <c>ema.safetensors</c> (keys <c>&lt;module&gt;.&lt;parameter&gt;</c>)
/// so that a resumed run continues the same average.
/// </summary>
public sealed class ParameterEma : IDisposable
{
    public const string FileName = "ema.safetensors";

    readonly List<(string Name, Tensor Parameter, Tensor Shadow)> _entries = [];
    readonly double _maxDecay;

    public ParameterEma(IReadOnlyList<TrainableModule> modules, double maxDecay)
    {
        if (maxDecay is <= 0 or >= 1) throw new EllaException($"EMA decay {maxDecay}: must be in (0, 1)");
        _maxDecay = maxDecay;
        using (no_grad())
            foreach (var m in modules)
                foreach (var (name, p) in m.Module.named_parameters())
                    _entries.Add(($"{m.Name}.{name}", p, p.detach().clone().to(ScalarType.Float32)));
    }

    /// <summary>The decay used after optimizer step <paramref name="step"/> (1-based).</summary>
    public double DecayAt(int step) => Math.Min(_maxDecay, (1.0 + step) / (10.0 + step));

    /// <summary>Folds the parameters in after optimizer step <paramref name="step"/> (1-based).</summary>
    public void Update(int step)
    {
        double decay = DecayAt(step);
        using var scope = NewDisposeScope();
        using (no_grad())
            foreach (var (_, p, shadow) in _entries)
                shadow.mul_(decay).add_(p.detach().to(ScalarType.Float32), alpha: 1 - decay);
    }

    public void Save(string path) => SafetensorsWriter.Save(path, _entries.Select(e => new KeyValuePair<string, Tensor>(e.Name, e.Shadow)));

    /// <summary>Reads a checkpoint's average; a missing file (a checkpoint written before the stage had an EMA) starts it from the parameters.</summary>
    public void Load(string path)
    {
        if (!File.Exists(path)) return;
        using var file = SafetensorsFile.Open(path);
        foreach (var (name, _, shadow) in _entries)
        {
            if (!file.Contains(name)) throw new EllaException($"{path}: no tensor '{name}' (the checkpoint does not belong to this model)");
            file.ReadInto(name, shadow);
        }
    }

    /// <summary>Writes the average into the parameters (what the stage ships).</summary>
    public void CopyToParameters()
    {
        using (no_grad())
            foreach (var (_, p, shadow) in _entries) p.copy_(shadow);
    }

    public void Dispose()
    {
        foreach (var e in _entries) e.Shadow.Dispose();
        _entries.Clear();
    }
}
