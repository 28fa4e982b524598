using TorchSharp;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>
/// Mixed-precision training of one module: the float32 <b>master</b> keeps the weights that AdamW updates, the EMA
/// averages and the checkpoints save; the <b>copy</b> (same architecture, in <see cref="DType"/>, e.g. bf16) runs the
/// forward and backward passes. Before each step the master's weights are cast into the copy
/// (<see cref="PullWeights"/>); after the backward pass the copy's gradients are cast back into the master's
/// (<see cref="PushGradients"/>), where clipping and the optimizer see them. On a CPU with native bf16 (avx512_bf16)
/// this runs the world's UNet step about twice as fast as float32, while small updates still accumulate in float32.
/// </summary>
public sealed class LowPrecisionCopy : IDisposable
{
    readonly List<(string Name, Tensor Master, Tensor Copy)> _pairs = [];

    public nn.Module Copy { get; }
    public ScalarType DType { get; }

    /// <param name="master">The float32 module being trained.</param>
    /// <param name="copy">A freshly built module of the same architecture; it is moved to <paramref name="dtype"/> and owned by this object.</param>
    public LowPrecisionCopy(nn.Module master, nn.Module copy, ScalarType dtype)
    {
        Copy = copy;
        DType = dtype;
        copy.to(dtype);
        var copies = copy.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in master.named_parameters())
        {
            if (!copies.TryGetValue(name, out var c) || !c.shape.SequenceEqual(p.shape))
                throw new EllaException($"low-precision copy: parameter '{name}' has no counterpart of shape [{string.Join(", ", p.shape)}] in the copy");
            _pairs.Add((name, p, c));
        }
        if (copies.Count != _pairs.Count) throw new EllaException($"low-precision copy: the copy has {copies.Count} parameters, the master {_pairs.Count}");
        using (no_grad())
            foreach (var (name, buffer) in master.named_buffers())
                copy.named_buffers().First(b => b.name == name).buffer.copy_(buffer);
        copy.train(master.training);
    }

    /// <summary>Casts the master's weights into the copy and clears the copy's gradients.</summary>
    public void PullWeights()
    {
        using (no_grad())
            foreach (var (_, master, copy) in _pairs)
            {
                copy.copy_(master);
                copy.requires_grad = master.requires_grad;
                copy.grad = null;
            }
    }

    /// <summary>Casts the copy's gradients into the master's gradients (a parameter the loss did not reach gets none).</summary>
    public void PushGradients()
    {
        using (no_grad())
            foreach (var (_, master, copy) in _pairs)
            {
                if (copy.grad is not { } g) continue;
                if (master.grad is { } mg) mg.copy_(g);
                else master.grad = g.to(master.dtype);
                copy.grad = null;
            }
    }

    public void Dispose()
    {
        _pairs.Clear();
        Copy.Dispose();
    }
}
