using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Training.Data;

/// <summary>Why a sample was skipped (the keys of <see cref="SkipCounter.ByReason"/>).</summary>
public static class SkipReasons
{
    public const string CorruptImage = "corrupt image";
    public const string ImageTooLarge = "image too large";
    public const string MissingImage = "missing image";
    public const string MissingCaption = "missing caption";
    public const string EmptyCaption = "empty caption";
    public const string BadMetadata = "bad metadata line";
    public const string MissingMask = "missing mask";
    public const string BadMask = "bad mask";
}

/// <summary>An image that cannot be used; <see cref="Reason"/> is one of <see cref="SkipReasons"/>.</summary>
public sealed class BadImageException(string reason, string detail) : Exception(detail)
{
    public string Reason { get; } = reason;
}

/// <summary>
/// Turns encoded image bytes (PNG, JPEG, WebP, GIF, BMP: whatever SkiaSharp decodes) into training pixels, as the
/// diffusers training scripts do with torchvision: EXIF orientation applied, alpha composited on white, short side
/// resized to the resolution (bilinear, antialiased), center or random crop, random horizontal flip, then [−1, 1].
/// Random draws come from the caller's generator, in torchvision's order: crop top, crop left, then flip.
/// </summary>
public static class ImagePreprocessor
{
    /// <summary>Images larger than this (by their header) are refused before decoding: decompression bombs.</summary>
    public const long MaxPixels = 100_000_000;

    /// <summary>
    /// Decodes to float32 [3, H, W] in [0, 1], upright, RGB on white. Throws <see cref="BadImageException"/>. With
    /// <paramref name="minShortSide"/>, an image whose short side is over 4× that is first reduced so its short side
    /// stays at least 2× it (JPEG: scaled DCT decoding; others: Skia's mipmapped high-quality downscale): a 24-megapixel
    /// photo then never becomes a 400 MB float tensor, and the final antialiased resize still sees at least 2× its
    /// output size.
    /// </summary>
    public static Tensor Decode(byte[] bytes, int? minShortSide = null)
    {
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data) ?? throw new BadImageException(SkipReasons.CorruptImage, "not a decodable image");
        var size = codec.Info;
        if (size.Width <= 0 || size.Height <= 0) throw new BadImageException(SkipReasons.CorruptImage, "image has no pixels");
        if ((long)size.Width * size.Height > MaxPixels)
            throw new BadImageException(SkipReasons.ImageTooLarge, $"{size.Width}×{size.Height} pixels is more than {MaxPixels / 1_000_000} megapixels");
        var decodeSize = new SKSizeI(size.Width, size.Height);
        int shortSide = Math.Min(size.Width, size.Height);
        if (minShortSide is { } target && codec.EncodedFormat == SKEncodedImageFormat.Jpeg && shortSide >= 4 * target)
        {
            var scaled = codec.GetScaledDimensions(2f * target / shortSide);
            if (Math.Min(scaled.Width, scaled.Height) >= 2 * target) decodeSize = scaled;
        }
        // premultiplied: resizing is then correct at edges of transparency, and "on white" is rgb + (1 − alpha)
        var info = new SKImageInfo(decodeSize.Width, decodeSize.Height, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result != SKCodecResult.Success) throw new BadImageException(SkipReasons.CorruptImage, $"decoding failed ({result})");
        var pixels = bitmap;
        SKBitmap? reduced = null;
        try
        {
            if (minShortSide is { } t && Math.Min(info.Width, info.Height) > 4 * t)
            {
                double f = 2.0 * t / Math.Min(info.Width, info.Height);
                var small = new SKImageInfo(Math.Max(2 * t, (int)Math.Round(info.Width * f)), Math.Max(2 * t, (int)Math.Round(info.Height * f)), SKColorType.Rgba8888, SKAlphaType.Premul);
                reduced = bitmap.Resize(small, SKFilterQuality.High) ?? throw new BadImageException(SkipReasons.CorruptImage, "downscaling failed");
                pixels = reduced;
            }
            int w = pixels.Width, h = pixels.Height, plane = w * h;
            var chw = new float[3L * plane];
            unsafe
            {
                byte* src = (byte*)pixels.GetPixels();
                const float inv = 1f / 255f;
                for (int i = 0; i < plane; i++, src += 4)
                {
                    float white = 1f - src[3] * inv; // premultiplied colour over white
                    chw[i] = Math.Min(1f, src[0] * inv + white);
                    chw[plane + i] = Math.Min(1f, src[1] * inv + white);
                    chw[2 * plane + i] = Math.Min(1f, src[2] * inv + white);
                }
            }
            using var scope = NewDisposeScope();
            var image = tensor(chw, [3, h, w]);
            if (codec.EncodedOrigin is SKEncodedOrigin.TopLeft or SKEncodedOrigin.Default) return image.MoveToOuterDisposeScope();
            return Orient(image, codec.EncodedOrigin).contiguous().MoveToOuterDisposeScope();
        }
        finally
        {
            reduced?.Dispose();
        }
    }

    /// <summary>Applies an EXIF orientation to [C, H, W] (as PIL's exif_transpose).</summary>
    internal static Tensor Orient(Tensor chw, SKEncodedOrigin origin) => origin switch
    {
        SKEncodedOrigin.TopRight => chw.flip(2),
        SKEncodedOrigin.BottomRight => chw.flip(1, 2),
        SKEncodedOrigin.BottomLeft => chw.flip(1),
        SKEncodedOrigin.LeftTop => chw.transpose(1, 2),
        SKEncodedOrigin.RightTop => chw.transpose(1, 2).flip(2),
        SKEncodedOrigin.RightBottom => chw.transpose(1, 2).flip(1, 2),
        SKEncodedOrigin.LeftBottom => chw.transpose(1, 2).flip(1),
        _ => chw.alias(),
    };

    /// <summary>torchvision's Resize(size) output: the short side becomes <paramref name="size"/>, the long side int(size·long/short).</summary>
    public static (int Width, int Height) ResizedSize(int width, int height, int size)
    {
        if (width <= height) return (size, (int)((long)size * height / width));
        return ((int)((long)size * width / height), size);
    }

    /// <summary>Full preprocessing of one decoded image [3, H, W] in [0, 1] → [3, R, R] in [−1, 1].</summary>
    public static Tensor Preprocess(Tensor image, ImagePreprocessing p, Generator? rng)
    {
        int r = p.Resolution;
        if (r <= 0) throw new ArgumentOutOfRangeException(nameof(p), "resolution must be positive");
        using var scope = NewDisposeScope();
        int h = (int)image.shape[1], w = (int)image.shape[2];
        var (nw, nh) = ResizedSize(w, h, r);
        var x = image;
        if (nw != w || nh != h)
        {
            using var batch = image.unsqueeze(0);
            x = nn.functional.interpolate(batch, [nh, nw], mode: InterpolationMode.Bilinear, align_corners: false, antialias: true).squeeze(0);
        }
        int top, left;
        if (p.RandomCrop)
        {
            (top, left) = (0, 0);
            if (nh != r || nw != r)
            {
                top = RandInt(nh - r + 1, rng);
                left = RandInt(nw - r + 1, rng);
            }
        }
        else
        {
            top = (int)Math.Round((nh - r) / 2.0, MidpointRounding.ToEven);
            left = (int)Math.Round((nw - r) / 2.0, MidpointRounding.ToEven);
        }
        x = x.narrow(1, top, r).narrow(2, left, r);
        if (p.RandomFlip)
        {
            using var u = rand(1, generator: rng);
            if (u.item<float>() < 0.5f) x = x.flip(2);
        }
        return (x * 2.0 - 1.0).clamp_(-1.0, 1.0).contiguous().MoveToOuterDisposeScope();
    }

    static int RandInt(int high, Generator? rng)
    {
        using var t = randint(0, high, [1], dtype: ScalarType.Int64, generator: rng);
        return (int)t.item<long>();
    }

    /// <summary>Decode and preprocess in one call.</summary>
    public static Tensor Load(byte[] bytes, ImagePreprocessing p, Generator? rng)
    {
        using var decoded = Decode(bytes, p.Resolution);
        return Preprocess(decoded, p, rng);
    }

    /// <summary>The encoded image's width and height as stored (before EXIF orientation), or null when undecodable.</summary>
    public static (int Width, int Height)? StoredSize(byte[] bytes)
    {
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data);
        return codec is null ? null : (codec.Info.Width, codec.Info.Height);
    }

    /// <summary>
    /// A loss mask (grayscale or RGB; white = foreground) prepared as its image: decoded, resized, cropped and flipped the
    /// same way when <paramref name="rng"/> is in the state the image's preprocessing started from. Returns [1, R, R] in
    /// [0, 1] (the mean of the three channels).
    /// </summary>
    public static Tensor LoadMask(byte[] bytes, ImagePreprocessing p, Generator? rng)
    {
        using var scope = NewDisposeScope();
        var rgb = Load(bytes, p, rng);
        return ((rgb.mean([0], keepdim: true) + 1) / 2).clamp_(0, 1).MoveToOuterDisposeScope();
    }
}
