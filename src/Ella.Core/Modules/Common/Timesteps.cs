using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>
/// Sinusoidal timestep features, as diffusers' <c>get_timestep_embedding</c> / <c>Timesteps</c>: frequencies
/// exp(-ln(max_period)·i/(half − shift)), sin half then cos half (swapped when flip_sin_to_cos). Always float32.
/// </summary>
public sealed class Timesteps : nn.Module<Tensor, Tensor>
{
    readonly int _numChannels;
    readonly bool _flipSinToCos;
    readonly double _downscaleFreqShift;
    readonly double _maxPeriod;

    public Timesteps(int numChannels, bool flipSinToCos, double downscaleFreqShift, double maxPeriod = 10000)
        : base(nameof(Timesteps))
    {
        _numChannels = numChannels;
        _flipSinToCos = flipSinToCos;
        _downscaleFreqShift = downscaleFreqShift;
        _maxPeriod = maxPeriod;
        RegisterComponents();
    }

    /// <param name="timesteps">1-D tensor [N] of any numeric dtype.</param>
    /// <returns>[N, numChannels] float32.</returns>
    public override Tensor forward(Tensor timesteps)
    {
        using var scope = NewDisposeScope();
        int half = _numChannels / 2;
        var exponent = arange(0, half, dtype: ScalarType.Float32, device: timesteps.device)
            .mul(-Math.Log(_maxPeriod)).div(half - _downscaleFreqShift);
        var freqs = exponent.exp();
        var args = timesteps.to_type(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);
        var emb = _flipSinToCos ? cat([args.cos(), args.sin()], -1) : cat([args.sin(), args.cos()], -1);
        if (_numChannels % 2 == 1) emb = nn.functional.pad(emb, new long[] { 0, 1 });
        return emb.MoveToOuterDisposeScope();
    }
}
