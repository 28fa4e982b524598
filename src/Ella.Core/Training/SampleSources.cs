using Ella.Modules.Vae;
using Ella.Text;
using Ella.TextEncoders;
using Ella.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Training;

/// <summary>
/// One training sample before noise: the VAE posterior (mean, std [4, h, w]), the caption's features [L, D], the caption,
/// and its loss mask at latent resolution [1, h, w] when the data has one.
/// </summary>
public sealed record PosteriorSample(Tensor Mean, Tensor Std, Tensor TextFeatures, string Caption = "", Tensor? Mask = null) : IDisposable
{
    public void Dispose()
    {
        Mean.Dispose();
        Std.Dispose();
        TextFeatures.Dispose();
        Mask?.Dispose();
    }
}

/// <summary>Where a run's samples come from: a feature cache, or images encoded live by the VAE and the text encoder.</summary>
public interface ISampleSource : IDisposable
{
    string Description { get; }
    int Count { get; }
    int TextFeatureDim { get; }
    double ScalingFactor { get; }
    /// <summary>The empty caption's features [L, D] float32.</summary>
    Tensor NullTextFeatures { get; }
    /// <summary>Sample <paramref name="index"/>, or null when it is skipped; <paramref name="position"/> seeds its crop and flip.</summary>
    PosteriorSample? TryLoad(int index, long position);
    int Skipped { get; }
    /// <summary>True when some sample carries a loss mask.</summary>
    bool HasMasks { get; }
}

/// <summary>Samples from a feature cache (no VAE or text encoder in memory).</summary>
public sealed class CachedSampleSource(IFeatureCache cache) : ISampleSource
{
    public string Description => $"feature cache {cache.Directory} ({cache.Count} samples)";
    public int Count => cache.Count;
    public int TextFeatureDim => cache.TextFeatureDim;
    public double ScalingFactor => cache.ScalingFactor;
    public Tensor NullTextFeatures => cache.NullTextFeatures;
    public int Skipped => 0;
    public bool HasMasks => cache.HasMasks;

    public PosteriorSample? TryLoad(int index, long position)
    {
        var s = cache.Load(index);
        return new PosteriorSample(s.LatentMean, s.LatentStd, s.TextFeatures, s.Caption, s.Mask);
    }

    public void Dispose() => cache.Dispose();
}

/// <summary>Images and captions read and encoded on the fly (VAE posterior, text features).</summary>
public sealed class LiveSampleSource : ISampleSource
{
    readonly IImageCaptionDataset _data;
    readonly AutoencoderKL _vae;
    readonly ITextFeatureEncoder _text;
    readonly ScalarType _dtype;
    readonly Device _device;
    readonly int _maxLength;
    readonly long _seed;

    public LiveSampleSource(IImageCaptionDataset data, AutoencoderKL vae, ITextFeatureEncoder text, ScalarType dtype, Device device, int maxLength, long seed)
    {
        _data = data;
        _vae = vae;
        _text = text;
        _dtype = dtype;
        _device = device;
        _maxLength = maxLength;
        _seed = seed;
        using var empty = text.Encode("", TokenLength.Flexible, maxLength);
        NullTextFeatures = empty.Features[0].to(ScalarType.Float32, CPU).DetachFromDisposeScope();
    }

    public string Description => $"{_data.Source} ({_data.Count} candidate samples, encoded live)";
    /// <summary>The encoder of the captions (also used for validation prompts).</summary>
    public ITextFeatureEncoder TextEncoder => _text;
    public int Count => _data.Count;
    public int TextFeatureDim => _text.HiddenSize;
    public double ScalingFactor => _vae.Config.ScalingFactor;
    public Tensor NullTextFeatures { get; }
    public int Skipped => _data.Skips.Total;
    public bool HasMasks => _data.HasMasks;

    public PosteriorSample? TryLoad(int index, long position)
    {
        var rng = new Generator((ulong)(_seed + position));
        using var sample = _data.TryLoad(index, rng);
        if (sample is null) return null;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad(); // not inference_mode: the features feed the autograd graph of the connector
        using var posterior = _vae.Encode(sample.Pixels.unsqueeze(0).to(_dtype, _device));
        var mean = posterior.Mean[0].to(ScalarType.Float32, CPU);
        var std = posterior.Std()[0].to(ScalarType.Float32, CPU);
        using var text = _text.Encode(sample.Caption, TokenLength.Flexible, _maxLength);
        var features = text.Features[0].to(ScalarType.Float32, CPU);
        var mask = sample.Mask is null ? null : FeatureCacheWriter.LatentMask(sample.Mask, _vae.Config.DownscaleFactor);
        return new PosteriorSample(mean.MoveToOuterDisposeScope(), std.MoveToOuterDisposeScope(), features.MoveToOuterDisposeScope(), sample.Caption,
            mask?.MoveToOuterDisposeScope());
    }

    public void Dispose()
    {
        _data.Dispose();
        _text.Dispose();
        NullTextFeatures.Dispose();
    }
}
