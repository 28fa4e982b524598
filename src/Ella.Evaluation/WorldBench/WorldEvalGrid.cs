using Ella.Imaging;

namespace Ella.Evaluation.WorldBench;

/// <summary>One prompt of <c>grid.png</c>: its id and text, and the first image of each of the two rows compared.</summary>
public sealed record WorldEvalGridEntry(string ItemId, string Prompt, RgbImage Left, RgbImage Right);

/// <summary>
/// <c>grid.png</c>: prompts side by side, for each the first image of two rows (base vs ELLA), enlarged by nearest
/// neighbour so the 64-px images can be seen, with the prompt text wrapped under the pair. Three prompts a line.
/// </summary>
public static class WorldEvalGrid
{
    public const string FileName = "grid.png";

    public static RgbImage Make(IReadOnlyList<WorldEvalGridEntry> entries, string leftLabel, string rightLabel, int scale = 3, int perLine = 3)
    {
        if (entries.Count == 0) throw new ArgumentException("no prompts", nameof(entries));
        const int margin = 24, gap = 6, lineHeight = 9;
        var panels = entries.Select(e =>
        {
            var pair = ImageGrid.Make([Upscale(e.Left, scale), Upscale(e.Right, scale)], 2,
                [$"{e.ItemId}: {leftLabel}", rightLabel], gap);
            var lines = Wrap(e.Prompt, pair.Width / 6);
            var panel = new RgbImage(pair.Width, pair.Height + 4 + lines.Count * lineHeight);
            panel.Fill(255, 255, 255);
            panel.Paste(pair, 0, 0);
            for (int i = 0; i < lines.Count; i++) BitmapFont.Draw(panel, lines[i], 0, pair.Height + 4 + i * lineHeight);
            return panel;
        }).ToList();
        int columns = Math.Min(perLine, panels.Count), lines = (panels.Count + columns - 1) / columns;
        int panelWidth = panels.Max(p => p.Width);
        var lineHeights = Enumerable.Range(0, lines).Select(l => panels.Skip(l * columns).Take(columns).Max(p => p.Height)).ToList();
        var grid = new RgbImage(margin + columns * (panelWidth + margin), margin + lineHeights.Sum(h => h + margin));
        grid.Fill(255, 255, 255);
        int y = margin;
        for (int l = 0; l < lines; l++)
        {
            for (int c = 0; c < columns && l * columns + c < panels.Count; c++)
                grid.Paste(panels[l * columns + c], margin + c * (panelWidth + margin), y);
            y += lineHeights[l] + margin;
        }
        return grid;
    }

    /// <summary>Each pixel becomes a <paramref name="factor"/>×<paramref name="factor"/> block.</summary>
    public static RgbImage Upscale(RgbImage image, int factor)
    {
        var big = new RgbImage(image.Width * factor, image.Height * factor);
        for (int y = 0; y < big.Height; y++)
            for (int x = 0; x < big.Width; x++)
                Array.Copy(image.Pixels, ((y / factor) * image.Width + x / factor) * 3, big.Pixels, (y * big.Width + x) * 3, 3);
        return big;
    }

    /// <summary>Greedy word wrap to lines of at most <paramref name="width"/> characters (longer words are cut).</summary>
    public static List<string> Wrap(string text, int width)
    {
        var lines = new List<string>();
        var line = "";
        foreach (var word in text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
        {
            string w = word.Length > width ? word[..width] : word;
            if (line.Length == 0) line = w;
            else if (line.Length + 1 + w.Length <= width) line += " " + w;
            else { lines.Add(line); line = w; }
        }
        if (line.Length > 0) lines.Add(line);
        return lines;
    }
}
