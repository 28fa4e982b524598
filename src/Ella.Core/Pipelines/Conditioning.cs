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

    /// <summary>
    /// [Rows, tokens] float: 1 for a token the UNet's cross-attention reads, 0 for zero padding it must skip; null when
    /// every row's tokens are all real. The token counts do not change with t, so neither does the mask; read it after
    /// a call to <see cref="At"/>.
    /// </summary>
    Tensor? TokenMask => null;
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
        if (_groups.Count > 1 && connector.TokensFollowText)
            using (NewDisposeScope())
                TokenMask = TokenPadding.Mask(rowFeatures.Select(f => f.shape[1]).ToArray()).to(rowFeatures[0].device).DetachFromDisposeScope();
    }

    public long Rows { get; }

    /// <summary>Rows of a connector whose token count follows the text (MLP) are padded to the longest: these are its real tokens.</summary>
    public Tensor? TokenMask { get; }

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
        TokenMask?.Dispose();
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
    public Tensor? TokenMask => source.TokenMask;

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
    Tensor? _mask;
    public long Rows => rows;
    public Tensor? TokenMask => single.TokenMask is { } m ? _mask ??= m.expand(rows, -1).DetachFromDisposeScope() : null;

    public Tensor At(StepTime t)
    {
        using var one = single.At(t);
        return one.expand(rows, -1, -1);
    }

    public void Dispose()
    {
        _mask?.Dispose();
        if (ownsSource) single.Dispose();
    }
}

/// <summary>Concatenates conditions along the token axis: ELLA's 64 tokens, then CLIP's 77 (ComfyUI-ELLA's order).</summary>
public sealed class ConcatConditioner(IConditioner first, IConditioner second) : IConditioner
{
    Tensor? _mask;
    public long Rows => first.Rows;

    /// <summary>Padding inside either part stays masked; the other part's tokens are all read.</summary>
    public Tensor? TokenMask => _mask;

    public Tensor At(StepTime t)
    {
        using var scope = NewDisposeScope();
        var a = first.At(t);
        var b = second.At(t);
        if (_mask is null && (first.TokenMask is not null || second.TokenMask is not null))
            _mask = cat([first.TokenMask?.to(a.device) ?? ones(a.shape[0], a.shape[1], device: a.device),
                second.TokenMask?.to(a.device) ?? ones(b.shape[0], b.shape[1], device: a.device)], 1).DetachFromDisposeScope();
        return cat([a, b.to_type(a.dtype)], 1).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        _mask?.Dispose();
        first.Dispose();
        second.Dispose();
    }
}

/// <summary>
/// Conditions whose token count follows the prompt (the MLP connector) are zero-padded to a common length before they
/// share one UNet batch, as the trainer pads a batch of such rows. Zero tokens are not neutral in cross-attention (each
/// adds a key with logit 0 to every softmax), so the padding comes with a mask the UNet applies
/// (<c>encoder_attention_mask</c>), in training and in sampling alike.
/// </summary>
public static class TokenPadding
{
    public static Tensor[] SameLength(params Tensor[] conditions)
    {
        long tokens = conditions.Max(c => c.shape[1]);
        return conditions.Select(c => c.shape[1] == tokens ? c : nn.functional.pad(c, [0, 0, 0, tokens - c.shape[1]])).ToArray();
    }

    /// <summary>[rows, max length] float: 1 for row r's first lengths[r] tokens, 0 after.</summary>
    public static Tensor Mask(long[] lengths)
    {
        long tokens = lengths.Max();
        using var positions = arange(tokens).unsqueeze(0);
        using var limits = tensor(lengths).unsqueeze(1);
        using var keep = positions.lt(limits);
        return keep.to_type(ScalarType.Float32);
    }

    /// <summary>
    /// Rows of several conditions joined into one batch (padded to the longest), and the mask of their real tokens, or
    /// null when nothing is padded.
    /// </summary>
    public static (Tensor Condition, Tensor? Mask) Join(params (Tensor Condition, Tensor? Mask)[] parts)
    {
        using var scope = NewDisposeScope();
        long tokens = parts.Max(p => p.Condition.shape[1]);
        var joined = cat(SameLength(parts.Select(p => p.Condition).ToArray()), 0);
        if (parts.All(p => p.Mask is null && p.Condition.shape[1] == tokens)) return (joined.MoveToOuterDisposeScope(), null);
        var masks = parts.Select(p =>
        {
            var m = p.Mask?.to(p.Condition.device) ?? ones(p.Condition.shape[0], p.Condition.shape[1], device: p.Condition.device);
            return m.shape[1] == tokens ? m : nn.functional.pad(m, [0, tokens - m.shape[1]]);
        }).ToArray();
        return (joined.MoveToOuterDisposeScope(), cat(masks, 0).MoveToOuterDisposeScope());
    }
}
