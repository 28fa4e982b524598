using Ella.Imaging;
using Ella.World.Scenes;

namespace Ella.Tests.World;

/// <summary>A stand-in for a VAE round trip until a trained VAE exists: separable Gaussian blur, then Gaussian noise.</summary>
static class ImageDegradation
{
    public static RgbImage BlurAndNoise(RgbImage image, double sigma, double noise, WorldRandom rng)
    {
        int w = image.Width, h = image.Height, radius = (int)Math.Ceiling(3 * sigma);
        var kernel = Enumerable.Range(-radius, 2 * radius + 1).Select(i => Math.Exp(-i * i / (2 * sigma * sigma))).ToArray();
        double sum = kernel.Sum();
        for (int i = 0; i < kernel.Length; i++) kernel[i] /= sum;
        var src = image.Pixels.Select(b => (double)b).ToArray();
        var tmp = new double[src.Length];
        var dst = new double[src.Length];
        // Edges are clamped (replicate padding).
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++)
                {
                    double v = 0;
                    for (int k = -radius; k <= radius; k++) v += kernel[k + radius] * src[(y * w + Math.Clamp(x + k, 0, w - 1)) * 3 + c];
                    tmp[(y * w + x) * 3 + c] = v;
                }
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++)
                {
                    double v = 0;
                    for (int k = -radius; k <= radius; k++) v += kernel[k + radius] * tmp[(Math.Clamp(y + k, 0, h - 1) * w + x) * 3 + c];
                    dst[(y * w + x) * 3 + c] = v;
                }
        var result = new RgbImage(w, h);
        for (int i = 0; i < dst.Length; i++) result.Pixels[i] = (byte)Math.Clamp(Math.Round(dst[i] + noise * rng.NextGaussian()), 0, 255);
        return result;
    }
}
