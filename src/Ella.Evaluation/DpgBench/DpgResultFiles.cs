using System.Globalization;
using System.Text;

namespace Ella.Evaluation.DpgBench;

/// <summary>
/// What a scored run leaves beside its numbers: <c>dpg_results.csv</c> (per item and crop) and <c>dpg_detail.txt</c>
/// (image, crop, question, answer), written atomically.
/// </summary>
public static class DpgResultFiles
{
    public const string ResultsFile = "dpg_results.csv";
    public const string DetailFile = "dpg_detail.txt";

    /// <param name="hint">appended to a write error (e.g. "; pass --out DIR")</param>
    public static void Write(string outDir, DpgResult r, string hint = "")
    {
        var inv = CultureInfo.InvariantCulture;
        var csv = new StringBuilder();
        int crops = r.CropScores.Values.Select(v => v.Length).DefaultIfEmpty(0).Max();
        csv.AppendLine("item_id," + string.Concat(Enumerable.Range(0, crops).Select(c => $"crop_{c},")) + "score");
        foreach (var (id, score) in r.Items)
            csv.AppendLine($"{Quote(id)},{string.Concat(r.CropScores[id].Select(s => s.ToString("R", inv) + ","))}{score.ToString("R", inv)}");
        WriteAtomic(Path.Combine(outDir, ResultsFile), csv.ToString(), hint);
        var detail = new StringBuilder();
        foreach (var d in r.Details) detail.AppendLine($"{d.Image}, crop {d.Crop}, {d.Question}, {d.Answer.ReplaceLineEndings(" ")}");
        WriteAtomic(Path.Combine(outDir, DetailFile), detail.ToString(), hint);
    }

    static string Quote(string s) => s.Contains(',') || s.Contains('"') ? $"\"{s.Replace("\"", "\"\"")}\"" : s;

    static void WriteAtomic(string path, string text, string hint)
    {
        try
        {
            Ella.IO.AtomicFile.WriteAllText(path, text);
        }
        catch (UnauthorizedAccessException e) { throw new EllaException($"{path}: cannot write ({e.Message}){hint}", e); }
        catch (IOException e) { throw new EllaException($"{path}: cannot write ({e.Message}){hint}", e); }
    }
}
