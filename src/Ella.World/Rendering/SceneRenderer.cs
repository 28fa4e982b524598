using Ella.Imaging;
using Ella.World.Scenes;

namespace Ella.World.Rendering;

/// <summary>
/// Draws a scene with its own rasteriser (no fonts, no platform code, so the bytes are the same on every machine):
/// each pixel's coverage of each shape is measured on an 8×8 grid of sample points, and the shape's colour is blended
/// over the background by that coverage (antialiased edges, as an image model would see them). Triangles point up.
/// </summary>
public static class SceneRenderer
{
    const int Samples = 8;

    public static RgbImage Render(Scene scene, int size = Vocabulary.CanvasSize)
    {
        if (size < 8) throw new ArgumentOutOfRangeException(nameof(size), "canvas too small");
        double scale = size / (double)Vocabulary.CanvasSize;
        var image = new RgbImage(size, size);
        var bg = Vocabulary.Palette(scene.Background);
        image.Fill(bg.R, bg.G, bg.B);
        foreach (var o in scene.Objects)
        {
            var c = Vocabulary.Palette(o.Color);
            double x0 = o.X * scale, y0 = o.Y * scale, s = o.Side * scale;
            int px0 = Math.Max(0, (int)Math.Floor(x0)), py0 = Math.Max(0, (int)Math.Floor(y0));
            int px1 = Math.Min(size - 1, (int)Math.Ceiling(x0 + s)), py1 = Math.Min(size - 1, (int)Math.Ceiling(y0 + s));
            for (int py = py0; py <= py1; py++)
                for (int px = px0; px <= px1; px++)
                {
                    // Shapes are convex: a pixel whose four corners are inside is covered entirely.
                    bool Corner(int cx, int cy) => Inside(o.Shape, (px + cx - x0) / s, (py + cy - y0) / s);
                    int inside = 0;
                    if (Corner(0, 0) && Corner(1, 0) && Corner(0, 1) && Corner(1, 1)) inside = Samples * Samples;
                    else for (int sy = 0; sy < Samples; sy++)
                        for (int sx = 0; sx < Samples; sx++)
                        {
                            double u = (px + (sx + 0.5) / Samples - x0) / s, v = (py + (sy + 0.5) / Samples - y0) / s;
                            if (Inside(o.Shape, u, v)) inside++;
                        }
                    if (inside == 0) continue;
                    double a = inside / (double)(Samples * Samples);
                    int i = (py * size + px) * 3;
                    image.Pixels[i] = Blend(image.Pixels[i], c.R, a);
                    image.Pixels[i + 1] = Blend(image.Pixels[i + 1], c.G, a);
                    image.Pixels[i + 2] = Blend(image.Pixels[i + 2], c.B, a);
                }
        }
        return image;
    }

    /// <summary>
    /// The scene's foreground mask, drawn by the same rasteriser: every object white on black, so a pixel's grey level is
    /// how much of it objects cover (what <c>ella train --foreground-weight</c> reads).
    /// </summary>
    public static RgbImage RenderMask(Scene scene, int size = Vocabulary.CanvasSize) =>
        Render(new Scene(Background.Black, scene.Objects.Select(o => o with { Color = ObjectColor.White }).ToList()), size);

    /// <summary>Whether the point (u, v) of the unit box (0..1, y down) is inside the shape.</summary>
    public static bool Inside(Shape shape, double u, double v)
    {
        if (u < 0 || u > 1 || v < 0 || v > 1) return false;
        return shape switch
        {
            Shape.Square => true,
            Shape.Circle => (u - 0.5) * (u - 0.5) + (v - 0.5) * (v - 0.5) <= 0.25,
            // apex (0.5, 0), base from (0, 1) to (1, 1): |u − 0.5| ≤ v / 2
            Shape.Triangle => Math.Abs(u - 0.5) <= v / 2,
            _ => throw new ArgumentOutOfRangeException(nameof(shape)),
        };
    }

    static byte Blend(byte under, byte over, double a) => (byte)Math.Round(under * (1 - a) + over * a);
}
