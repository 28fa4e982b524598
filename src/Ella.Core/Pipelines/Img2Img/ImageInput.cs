using Ella.Imaging;
using SkiaSharp;
using static TorchSharp.torch;

namespace Ella.Pipelines.Img2Img;

/// <summary>
/// diffusers' VaeImageProcessor.preprocess for one PIL image: resized to the target size when it differs, then
/// [1, C, H, W] float32 in [0, 1], normalised to [−1, 1] for the VAE, or binarised (mask: grayscale, ≥ 0.5 → 1).
/// </summary>
public static class ImageInput
{
    /// <summary>The size an init image gives when --width/--height are not set: its own, rounded down to a multiple of
    /// <paramref name="factor"/> (diffusers' get_default_height_width).</summary>
    public static (int Width, int Height) DefaultSize(RgbImage image, int factor) =>
        (image.Width - image.Width % factor, image.Height - image.Height % factor);

    /// <summary>RGB [1, 3, H, W] in [−1, 1] (VAE input).</summary>
    public static Tensor ForVae(RgbImage image, int width, int height)
    {
        using var scope = NewDisposeScope();
        return (Resize(image, width, height).ToTensor().unsqueeze(0) * 2 - 1).MoveToOuterDisposeScope();
    }

    /// <summary>RGB [1, 3, H, W] in [0, 1] (ControlNet conditioning image).</summary>
    public static Tensor ForControl(RgbImage image, int width, int height)
    {
        using var scope = NewDisposeScope();
        return Resize(image, width, height).ToTensor().unsqueeze(0).MoveToOuterDisposeScope();
    }

    /// <summary>Mask [1, 1, H, W]: PIL's convert("L") luma, then 1 where ≥ 0.5 (white = repaint), else 0.</summary>
    public static Tensor Mask(RgbImage mask, int width, int height)
    {
        var m = Resize(mask, width, height);
        var values = new float[m.Width * m.Height];
        for (int i = 0, p = 0; i < values.Length; i++, p += 3)
        {
            int luma = (m.Pixels[p] * 19595 + m.Pixels[p + 1] * 38470 + m.Pixels[p + 2] * 7471 + 0x8000) >> 16; // PIL's L conversion
            values[i] = luma / 255f >= 0.5f ? 1f : 0f;
        }
        return tensor(values).reshape(1, 1, m.Height, m.Width);
    }

    /// <summary>High-quality resampling (SkiaSharp) when the size differs; the same image otherwise.</summary>
    public static RgbImage Resize(RgbImage image, int width, int height)
    {
        if (image.Width == width && image.Height == height) return image;
        var rgba = new byte[image.Width * image.Height * 4];
        for (int i = 0, j = 0; i < image.Pixels.Length; i += 3, j += 4)
        {
            rgba[j] = image.Pixels[i]; rgba[j + 1] = image.Pixels[i + 1]; rgba[j + 2] = image.Pixels[i + 2]; rgba[j + 3] = 255;
        }
        using var source = new SKBitmap(new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, source.GetPixels(), rgba.Length);
        using var resized = source.Resize(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque), SKFilterQuality.High)
                            ?? throw new EllaException($"could not resize a {image.Width}×{image.Height} image to {width}×{height}");
        var result = new RgbImage(width, height);
        var bytes = resized.Bytes;
        int stride = resized.RowBytes;
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int s = y * stride + x * 4, d = (y * width + x) * 3;
                result.Pixels[d] = bytes[s]; result.Pixels[d + 1] = bytes[s + 1]; result.Pixels[d + 2] = bytes[s + 2];
            }
        return result;
    }
}
