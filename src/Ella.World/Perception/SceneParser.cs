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
    public const double TriangleBottomShare = 0.58;
    public const double SquareFill = 0.86;
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

        // 3. Connected components of object pixels. A component is one object of its majority colour unless a second
        //    colour holds a large share of it (objects drawn touching): then it splits into per-colour components.
        var regions = new List<ParsedRegion>();
        var seen = new bool[w * h];
        foreach (var component in Components(w, h, k => labels[k] >= 0, (a, b) => true, seen))
        {
            if (component.Count < MinArea * scale * scale) continue;
            var votes = component.GroupBy(k => labels[k]).Select(g => (Label: g.Key, Count: g.Count())).OrderByDescending(v => v.Count).ToList();
            if (votes[0].Count >= MajorityShare * component.Count)
            {
                regions.Add(Describe(component, candidates[votes[0].Label], w, scale));
                continue;
            }
            var inside = new bool[w * h];
            foreach (int k in component) inside[k] = true;
            var split = new bool[w * h];
            foreach (var part in Components(w, h, k => inside[k], (a, b) => labels[a] == labels[b], split))
                if (part.Count >= MinArea * scale * scale) regions.Add(Describe(part, candidates[labels[part[0]]], w, scale));
        }
        return regions;
    }

    /// <summary>Share of a component's pixels its main colour must have for the component to be one object.</summary>
    public const double MajorityShare = 0.7;

    /// <summary>4-connected components of the pixels where <paramref name="member"/> holds, neighbours joined when <paramref name="joins"/>.</summary>
    static IEnumerable<List<int>> Components(int w, int h, Func<int, bool> member, Func<int, int, bool> joins, bool[] seen)
    {
        var stack = new Stack<int>();
        for (int start = 0; start < w * h; start++)
        {
            if (!member(start) || seen[start]) continue;
            var members = new List<int>();
            stack.Push(start); seen[start] = true;
            while (stack.Count > 0)
            {
                int k = stack.Pop();
                members.Add(k);
                int x = k % w, y = k / w;
                void Visit(int n) { if (!seen[n] && member(n) && joins(k, n)) { seen[n] = true; stack.Push(n); } }
                if (x > 0) Visit(k - 1);
                if (x < w - 1) Visit(k + 1);
                if (y > 0) Visit(k - w);
                if (y < h - 1) Visit(k + w);
            }
            yield return members;
        }
    }

    /// <summary>Shape, size and position of one region.</summary>
    static ParsedRegion Describe(List<int> members, ObjectColor color, int w, double scale)
    {
        int minX = int.MaxValue, maxX = -1, minY = int.MaxValue, maxY = -1;
        foreach (int k in members)
        {
            int x = k % w, y = k / w;
            minX = Math.Min(minX, x); maxX = Math.Max(maxX, x); minY = Math.Min(minY, y); maxY = Math.Max(maxY, y);
        }
        // Noise leaves single stray pixels on an edge; a box row or column with only one pixel is not part of the shape.
        var columns = new int[maxX - minX + 1];
        var rows = new int[maxY - minY + 1];
        foreach (int k in members) { columns[k % w - minX]++; rows[k / w - minY]++; }
        int columnBase = minX, rowBase = minY;
        while (maxX - minX > 2 && columns[minX - columnBase] <= 1) minX++;
        while (maxX - minX > 2 && columns[maxX - columnBase] <= 1) maxX--;
        while (maxY - minY > 2 && rows[minY - rowBase] <= 1) minY++;
        while (maxY - minY > 2 && rows[maxY - rowBase] <= 1) maxY--;
        int bw = maxX - minX + 1, bh = maxY - minY + 1;
        double mid = (minY + maxY) / 2.0, bottom = 0;
        int area = 0;
        foreach (int k in members)
        {
            int x = k % w, y = k / w;
            if (x < minX || x > maxX || y < minY || y > maxY) continue;
            area++;
            bottom += y > mid ? 1 : y == mid ? 0.5 : 0;
        }
        double fill = area / (double)(bw * bh), bottomShare = bottom / area;
        var shape = bottomShare >= TriangleBottomShare ? Shape.Triangle : fill >= SquareFill ? Shape.Square : Shape.Circle;
        var size = Math.Max(bw, bh) / scale >= Vocabulary.SizeThreshold ? ObjectSize.Large : ObjectSize.Small;
        var obj = new PerceivedObject(shape, color, size, (minX + maxX + 1) / 2.0 / scale, (minY + maxY + 1) / 2.0 / scale);
        return new ParsedRegion(obj, members.Count, bw, bh, fill, bottomShare);
    }

    static double Median(List<byte> values)
    {
        values.Sort();
        int n = values.Count;
        return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2.0;
    }
}
