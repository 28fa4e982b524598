using Ella.Modules.Ella;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>A denoising step's timestep: the host value (for caches and logs) and the 0-dim tensor the models take.</summary>
public readonly record struct StepTime(double Value, Tensor Tensor);

/// <summary>
/// The UNet's encoder_hidden_states for some batch rows as a function of the timestep. ELLA's depends on t (the
/// connector is timestep-aware); CLIP's is fixed; ELLA+CLIP concatenates the two along the token axis.
/// </summary>
public interface IConditioner : IDisposable
{
    /// <summary>Rows this conditioner produces.</summary>
    long Rows { get; }
    /// <summary>[Rows, tokens, width] at timestep <paramref name="t"/>.</summary>
    Tensor At(StepTime t);
}

/// <summary>A condition that does not depend on the timestep (CLIP's last hidden state).</summary>
public sealed class StaticConditioner(Tensor condition) : IConditioner
{
    readonly Tensor _condition = condition.DetachFromDisposeScope();
    public long Rows => _condition.shape[0];
    public Tensor At(StepTime t) => _condition.alias();
    public void Dispose() => _condition.Dispose();
}

/// <summary>
/// ELLA's timestep-aware condition. Each row has its own text features (flexible length: its true length, no
/// padding; fixed length: all rows share the padded length). Rows of equal length run through the connector as one
/// batch, which gives the same numbers as the authors' one-row-at-a-time loop.
/// </summary>
public sealed class EllaConditioner : IConditioner
{
    readonly ConnectorModule _connector;
    Tensor? _timestepFree; // a connector that ignores t: its output, computed once
    readonly List<(Tensor Features, int[] Rows)> _groups = new();
    readonly ScalarType _dtype;
    readonly bool _singleBatchInOrder;

    /// <param name="rowFeatures">per row [1, L_r, input_dim]; rows with identical tensors/lengths are grouped</param>
    public EllaConditioner(ConnectorModule connector, IReadOnlyList<Tensor> rowFeatures, ScalarType dtype)
    {
        _connector = connector;
        _dtype = dtype;
        Rows = rowFeatures.Count;
        // Group rows with equal length into one batch (order of rows is restored in At).
        foreach (var group in Enumerable.Range(0, rowFeatures.Count).GroupBy(r => rowFeatures[r].shape[1]))
        {
            var rows = group.ToArray();
            var batch = cat(rows.Select(r => rowFeatures[r]).ToArray(), 0).to_type(dtype).DetachFromDisposeScope();
            _groups.Add((batch, rows));
        }
        _singleBatchInOrder = _groups.Count == 1 && _groups[0].Rows.SequenceEqual(Enumerable.Range(0, (int)Rows));
    }

    public long Rows { get; }

    public Tensor At(StepTime t)
    {
        if (!_connector.TimestepAware)
        {
            if (_timestepFree is null) using (NewDisposeScope()) _timestepFree = Compute(t).DetachFromDisposeScope();
            return _timestepFree.alias();
        }
        return Compute(t);
    }

    Tensor Compute(StepTime t)
    {
        using var scope = NewDisposeScope();
        if (_singleBatchInOrder)
            return _connector.forward(_groups[0].Features, t.Tensor).MoveToOuterDisposeScope();
        var outputs = new Tensor[Rows];
        foreach (var (features, rows) in _groups)
        {
            var result = _connector.forward(features, t.Tensor);
            for (int i = 0; i < rows.Length; i++) outputs[rows[i]] = result[i..(i + 1)];
        }
        return cat(TokenPadding.SameLength(outputs), 0).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var (f, _) in _groups) f.Dispose();
        _timestepFree?.Dispose();
    }
}

/// <summary>
/// A condition remembered per timestep. The negative prompt's ELLA output depends only on t, so it is computed once per
/// step value and reused by every later image with the same negative prompt (DPG-Bench renders 4,260 of them).
/// </summary>
public sealed class CachedConditioner(IConditioner source) : IConditioner
{
    readonly Dictionary<double, Tensor> _cache = new();
    public long Rows => source.Rows;

    public Tensor At(StepTime t)
    {
        if (!_cache.TryGetValue(t.Value, out var value))
        {
            if (_cache.Count >= MaxEntries) Clear(); // many different schedules: start over rather than grow
            using var scope = NewDisposeScope();
            value = source.At(t).DetachFromDisposeScope();
            _cache[t.Value] = value;
        }
        return value.alias();
    }

    const int MaxEntries = 512;

    void Clear()
    {
        foreach (var v in _cache.Values) v.Dispose();
        _cache.Clear();
    }

    public void Dispose()
    {
        Clear();
        source.Dispose();
    }
}

/// <summary>One condition row repeated for every image of a batch (a view, no copy).</summary>
/// <param name="ownsSource">dispose the source with this conditioner (false for a shared cache entry)</param>
public sealed class ExpandedConditioner(IConditioner single, long rows, bool ownsSource = false) : IConditioner
{
    public long Rows => rows;

    public Tensor At(StepTime t)
    {
        using var one = single.At(t);
        return one.expand(rows, -1, -1);
    }

    public void Dispose()
    {
        if (ownsSource) single.Dispose();
    }
}

/// <summary>Concatenates conditions along the token axis: ELLA's 64 tokens, then CLIP's 77 (ComfyUI-ELLA's order).</summary>
public sealed class ConcatConditioner(IConditioner first, IConditioner second) : IConditioner
{
    public long Rows => first.Rows;

    public Tensor At(StepTime t)
    {
        using var scope = NewDisposeScope();
        var a = first.At(t);
        var b = second.At(t);
        return cat([a, b.to_type(a.dtype)], 1).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        first.Dispose();
        second.Dispose();
    }
}

/// <summary>
/// Conditions whose token count follows the prompt (the MLP connector) are zero-padded to a common length before they
/// share one UNet batch — the same padding the trainer applies to a batch of such rows.
/// </summary>
public static class TokenPadding
{
    public static Tensor[] SameLength(params Tensor[] conditions)
    {
        long tokens = conditions.Max(c => c.shape[1]);
        return conditions.Select(c => c.shape[1] == tokens ? c : nn.functional.pad(c, [0, 0, 0, tokens - c.shape[1]])).ToArray();
    }
}
