using Ella.Imaging;
using Ella.World.Questions;
using Ella.World.Scenes;

namespace Ella.World.Perception;

/// <summary>A connected region the parser found, with the geometry its shape was read from (for diagnostics).</summary>
public sealed record ParsedRegion(PerceivedObject Object, int Area, int Width, int Height, double Fill, double BottomShare);

/// <summary>
/// Reads a scene back from pixels, for any image size (coordinates are scaled to the 64-pixel canvas):
/// <list type="number">
/// <item>background: the per-channel median of a border ring, classified to the nearest background colour;</item>
/// <item>colour segmentation by unmixing: each pixel p is modelled as bg + α·(c − bg) for every object colour c of the
/// palette that differs from the background; the colour with the smallest residual wins, and the pixel belongs to an
/// object when α ≥ ½. Antialiasing and blur mix object and background colours along that line, so the ½ level
/// keeps each edge where it was and the colour stays right even on blurred rims;</item>
/// <item>connected components (4-neighbour) per colour; fragments under <see cref="MinArea"/> canvas pixels are noise;</item>
/// <item>shape by geometry of the component: upward triangles hold about ¾ of their area in the lower half of their
/// box (circles and squares ½); squares fill their box (≈1), circles π/4 ≈ 0.79;</item>
/// <item>size: box side ≥ <see cref="Vocabulary.SizeThreshold"/> is large; position: the centre of the box.</item>
/// </list>
/// </summary>
public static class SceneParser
{
    public const double MinArea = 12;
    public const double TriangleBottomShare = 0.62;
    public const double SquareFill = 0.9;
    /// <summary>Object colours closer than this (RGB distance) to the background are not looked for.</summary>
    public const double MinContrast = 50;

    public static PerceivedScene Parse(RgbImage image)
    {
        var regions = ParseDetailed(image, out var background);
        return new PerceivedScene(background, regions.Select(r => r.Object).ToList());
    }

    public static List<ParsedRegion> ParseDetailed(RgbImage image, out Background background)
    {
        int w = image.Width, h = image.Height;
        double scale = w / (double)Vocabulary.CanvasSize;
        var px = image.Pixels;

        // 1. Background.
        int ring = Math.Max(1, (int)Math.Round(2 * scale));
        var rs = new List<byte>(); var gs = new List<byte>(); var bs = new List<byte>();
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                if (x >= ring && x < w - ring && y >= ring && y < h - ring) continue;
                int i = (y * w + x) * 3;
                rs.Add(px[i]); gs.Add(px[i + 1]); bs.Add(px[i + 2]);
            }
        double br = Median(rs), bgG = Median(gs), bb = Median(bs);
        background = Vocabulary.Backgrounds.MinBy(b => Vocabulary.Palette(b).DistanceSquared(br, bgG, bb));

        // 2. Unmixing against every object colour that stands out from the background.
        var candidates = Vocabulary.Colors.Where(c => Math.Sqrt(Vocabulary.Palette(c).DistanceSquared(br, bgG, bb)) >= MinContrast).ToArray();
        var dirs = candidates.Select(c => { var p = Vocabulary.Palette(c); return (R: p.R - br, G: p.G - bgG, B: p.B - bb); }).ToArray();
        var labels = new int[w * h];
        for (int k = 0; k < w * h; k++)
        {
            double dr = px[3 * k] - br, dg = px[3 * k + 1] - bgG, db = px[3 * k + 2] - bb;
            int best = -1; double bestResidual = double.MaxValue, bestAlpha = 0;
            for (int c = 0; c < dirs.Length; c++)
            {
                var d = dirs[c];
                double norm = d.R * d.R + d.G * d.G + d.B * d.B;
                double a = Math.Clamp((dr * d.R + dg * d.G + db * d.B) / norm, 0, 1);
                double er = dr - a * d.R, eg = dg - a * d.G, eb = db - a * d.B;
                double residual = er * er + eg * eg + eb * eb;
                if (residual < bestResidual) { bestResidual = residual; best = c; bestAlpha = a; }
            }
            labels[k] = best >= 0 && bestAlpha >= 0.5 ? best : -1;
        }

        // 3. Connected components per colour, 4. shape, 5. size and position.
        var regions = new List<ParsedRegion>();
        var seen = new bool[w * h];
        var stack = new Stack<int>();
        var members = new List<int>();
        for (int start = 0; start < w * h; start++)
        {
            if (labels[start] < 0 || seen[start]) continue;
            int label = labels[start];
            members.Clear();
            stack.Push(start); seen[start] = true;
            while (stack.Count > 0)
            {
                int k = stack.Pop();
                members.Add(k);
                int x = k % w, y = k / w;
                void Visit(int n) { if (!seen[n] && labels[n] == label) { seen[n] = true; stack.Push(n); } }
                if (x > 0) Visit(k - 1);
                if (x < w - 1) Visit(k + 1);
                if (y > 0) Visit(k - w);
                if (y < h - 1) Visit(k + w);
            }
            if (members.Count < MinArea * scale * scale) continue;
            int minX = int.MaxValue, maxX = -1, minY = int.MaxValue, maxY = -1;
            foreach (int k in members)
            {
                int x = k % w, y = k / w;
                minX = Math.Min(minX, x); maxX = Math.Max(maxX, x); minY = Math.Min(minY, y); maxY = Math.Max(maxY, y);
            }
            int bw = maxX - minX + 1, bh = maxY - minY + 1;
            double mid = (minY + maxY) / 2.0, bottom = 0;
            foreach (int k in members)
            {
                double y = k / w;
                bottom += y > mid ? 1 : y == mid ? 0.5 : 0;
            }
            double fill = members.Count / (double)(bw * bh), bottomShare = bottom / members.Count;
            var shape = bottomShare >= TriangleBottomShare ? Shape.Triangle : fill >= SquareFill ? Shape.Square : Shape.Circle;
            var size = Math.Max(bw, bh) / scale >= Vocabulary.SizeThreshold ? ObjectSize.Large : ObjectSize.Small;
            var obj = new PerceivedObject(shape, candidates[label], size, (minX + maxX + 1) / 2.0 / scale, (minY + maxY + 1) / 2.0 / scale);
            regions.Add(new ParsedRegion(obj, members.Count, bw, bh, fill, bottomShare));
        }
        return regions;
    }

    static double Median(List<byte> values)
    {
        values.Sort();
        int n = values.Count;
        return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2.0;
    }
}
