using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Ella.Training.Data;

/// <summary>
/// What every reader shares: caption checks first (cheap), then decode and preprocess; any problem with one sample
/// becomes a counted skip with one warning, never an exception.
/// </summary>
public abstract class ImageCaptionDatasetBase : IImageCaptionDataset
{
    readonly Action<string>? _warn;

    protected ImageCaptionDatasetBase(string source, ImagePreprocessing preprocessing, Action<string>? warn, SkipCounter? skips = null)
    {
        Source = source;
        Preprocessing = preprocessing;
        _warn = warn;
        Skips = skips ?? new SkipCounter();
    }

    public string Source { get; }
    public ImagePreprocessing Preprocessing { get; }
    public SkipCounter Skips { get; }
    public abstract int Count { get; }

    /// <summary>The sample's stable key (unique within the dataset).</summary>
    public abstract string KeyOf(int index);

    public string? SkipReasonOf(int index) => Skips.ReasonFor(KeyOf(index));

    /// <summary>The caption, or null when there is none.</summary>
    protected abstract string? ReadCaption(int index);

    /// <summary>The encoded image bytes, or null when the image is missing.</summary>
    protected abstract byte[]? ReadImage(int index);

    /// <summary>True when some sample names a loss mask.</summary>
    public virtual bool HasMasks => false;

    /// <summary>The path of the sample's loss mask as named by the data (relative to it), or null when it names none.</summary>
    protected virtual string? MaskNameOf(int index) => null;

    /// <summary>The encoded mask bytes, or null when the named mask is missing.</summary>
    protected virtual byte[]? ReadMask(int index) => null;

    public ImageCaptionSample? TryLoad(int index, Generator rng)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), $"sample {index} of {Count}");
        string key = KeyOf(index);
        string? caption;
        try
        {
            caption = ReadCaption(index);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or InvalidDataException or FormatException)
        {
            return Skip(key, SkipReasons.MissingCaption, e.Message);
        }
        if (caption == null) return Skip(key, SkipReasons.MissingCaption, null);
        caption = caption.Trim();
        if (caption.Length == 0) return Skip(key, SkipReasons.EmptyCaption, null);

        byte[]? bytes;
        try
        {
            bytes = ReadImage(index);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            return Skip(key, SkipReasons.CorruptImage, e.Message);
        }
        if (bytes == null) return Skip(key, SkipReasons.MissingImage, null);
        byte[]? maskBytes = null;
        if (MaskNameOf(index) is { } maskName)
        {
            try
            {
                maskBytes = ReadMask(index);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Skip(key, SkipReasons.MissingMask, $"{maskName}: {e.Message}");
            }
            if (maskBytes == null) return Skip(key, SkipReasons.MissingMask, maskName);
            var (imageSize, maskSize) = (ImagePreprocessor.StoredSize(bytes), ImagePreprocessor.StoredSize(maskBytes));
            if (maskSize is null) return Skip(key, SkipReasons.BadMask, $"{maskName}: not a decodable image");
            if (imageSize is { } i && maskSize is { } m && i != m)
                return Skip(key, SkipReasons.BadMask, $"{maskName} is {m.Width}×{m.Height}, the image {i.Width}×{i.Height}");
        }
        Tensor? pixels = null;
        try
        {
            // the mask takes the image's crop and flip: the generator restarts from the state the image started from
            using var start = maskBytes is null ? null : rng.get_state();
            pixels = ImagePreprocessor.Load(bytes, Preprocessing, rng);
            Tensor? mask = null;
            if (maskBytes is not null)
            {
                using var after = rng.get_state();
                rng.set_state(start!);
                try
                {
                    mask = ImagePreprocessor.LoadMask(maskBytes, Preprocessing, rng);
                }
                catch (BadImageException e)
                {
                    pixels.Dispose();
                    return Skip(key, SkipReasons.BadMask, e.Message);
                }
                rng.set_state(after);
            }
            return new ImageCaptionSample(key, pixels, caption, mask);
        }
        catch (BadImageException e)
        {
            pixels?.Dispose();
            return Skip(key, e.Reason, e.Message);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or ExternalException)
        {
            string reason = pixels is null ? SkipReasons.CorruptImage : SkipReasons.BadMask;
            pixels?.Dispose();
            return Skip(key, reason, e.Message);
        }
    }

    /// <summary>Records a skip (warning once per key) and returns null.</summary>
    protected ImageCaptionSample? Skip(string key, string reason, string? detail)
    {
        if (Skips.Add(key, reason)) _warn?.Invoke($"warning: skipping {key} in {Source}: {reason}{(detail != null ? $" ({detail})" : "")}");
        return null;
    }

    public virtual void Dispose() { }
}
