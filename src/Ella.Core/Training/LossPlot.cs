using System.Globalization;
using System.Text.Json;
using Ella.Imaging;
using SkiaSharp;

namespace Ella.Training;

/// <summary>
/// The loss curve of a run (OUT/log.jsonl) as a PNG: raw per-step loss in light grey, an exponential moving average in
/// blue, axes with step and loss labels in the project's 5×7 bitmap font.
/// </summary>
public static class LossPlot
{
    public static List<(int Step, double Loss)> ReadLog(string logPath)
    {
        if (!File.Exists(logPath)) throw new EllaException($"{logPath}: no training log (log.jsonl) here");
        var points = new List<(int, double)>();
        int line = 0;
        foreach (var text in File.ReadLines(logPath))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                using var d = JsonDocument.Parse(text);
                points.Add((d.RootElement.GetProperty("step").GetInt32(), d.RootElement.GetProperty("loss").GetDouble()));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new EllaException($"{logPath}:{line}: not a log line with 'step' and 'loss' ({e.Message})");
            }
        }
        if (points.Count == 0) throw new EllaException($"{logPath}: the log has no steps yet");
        return points;
    }

    /// <summary>Exponential moving average with bias correction (as TensorBoard's smoothing).</summary>
    public static double[] Smooth(IReadOnlyList<double> values, double weight)
    {
        var result = new double[values.Count];
        double last = 0;
        for (int i = 0; i < values.Count; i++)
        {
            last = last * weight + (1 - weight) * values[i];
            result[i] = last / (1 - Math.Pow(weight, i + 1));
        }
        return result;
    }

    public static void Render(IReadOnlyList<(int Step, double Loss)> points, string path, int width = 900, int height = 500)
    {
        const int left = 80, right = 20, top = 40, bottom = 50;
        var finite = points.Where(p => double.IsFinite(p.Loss)).ToList();
        if (finite.Count == 0) throw new EllaException("the log has no finite loss values");
        double minX = finite.Min(p => p.Step), maxX = Math.Max(minX + 1, finite.Max(p => p.Step));
        double minY = finite.Min(p => p.Loss), maxY = finite.Max(p => p.Loss);
        if (maxY - minY < 1e-12) { minY -= 0.5; maxY += 0.5; }
        double pad = 0.05 * (maxY - minY);
        minY -= pad;
        maxY += pad;
        float X(double s) => (float)(left + (s - minX) / (maxX - minX) * (width - left - right));
        float Y(double l) => (float)(top + (maxY - l) / (maxY - minY) * (height - top - bottom));
        double weight = finite.Count < 20 ? 0.6 : 0.9;
        var smooth = Smooth(finite.Select(p => p.Loss).ToList(), weight);

        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.White);
            using var axis = new SKPaint { Color = SKColors.Black, StrokeWidth = 1, IsAntialias = false, Style = SKPaintStyle.Stroke };
            using var grid = new SKPaint { Color = new SKColor(230, 230, 230), StrokeWidth = 1, Style = SKPaintStyle.Stroke };
            for (int i = 0; i <= 4; i++)
            {
                float y = Y(minY + (maxY - minY) * i / 4);
                canvas.DrawLine(left, y, width - right, y, grid);
            }
            canvas.DrawLine(left, top, left, height - bottom, axis);
            canvas.DrawLine(left, height - bottom, width - right, height - bottom, axis);
            using var raw = new SKPaint { Color = new SKColor(180, 180, 180), StrokeWidth = 1, IsAntialias = true, Style = SKPaintStyle.Stroke };
            using var line = new SKPaint { Color = new SKColor(30, 90, 200), StrokeWidth = 2, IsAntialias = true, Style = SKPaintStyle.Stroke };
            using var rawPath = new SKPath();
            using var smoothPath = new SKPath();
            for (int i = 0; i < finite.Count; i++)
            {
                var (xs, ys, yy) = (X(finite[i].Step), Y(finite[i].Loss), Y(smooth[i]));
                if (i == 0) { rawPath.MoveTo(xs, ys); smoothPath.MoveTo(xs, yy); }
                else { rawPath.LineTo(xs, ys); smoothPath.LineTo(xs, yy); }
            }
            if (finite.Count == 1) canvas.DrawCircle(X(finite[0].Step), Y(finite[0].Loss), 3, line);
            canvas.DrawPath(rawPath, raw);
            canvas.DrawPath(smoothPath, line);
        }
        var image = new RgbImage(width, height);
        var pixels = bitmap.Bytes;
        for (int i = 0, j = 0; j < image.Pixels.Length; i += 4, j += 3)
        {
            image.Pixels[j] = pixels[i];
            image.Pixels[j + 1] = pixels[i + 1];
            image.Pixels[j + 2] = pixels[i + 2];
        }
        string F(double v) => v.ToString(Math.Abs(v) >= 100 ? "F0" : Math.Abs(v) >= 1 ? "F3" : "G3", CultureInfo.InvariantCulture);
        for (int i = 0; i <= 4; i++)
        {
            double v = minY + (maxY - minY) * i / 4;
            BitmapFont.Draw(image, F(v), 6, (int)Y(v) - 3);
        }
        for (int i = 0; i <= 4; i++)
        {
            double s = minX + (maxX - minX) * i / 4;
            string label = Math.Round(s).ToString(CultureInfo.InvariantCulture);
            BitmapFont.Draw(image, label, (int)X(s) - 3 * label.Length, height - bottom + 8);
        }
        BitmapFont.Draw(image, "STEP", width / 2 - 12, height - 18);
        BitmapFont.Draw(image, $"TRAINING LOSS (RAW: GREY, SMOOTHED EMA {weight.ToString(CultureInfo.InvariantCulture)}: BLUE)", left, 12, 2);
        image.SavePng(path);
    }
}
