using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Ella.Imaging;
using Ella.World.Rendering;
using Ella.World.Scenes;

namespace Ella.World.Splits;

/// <summary>One line of <c>metadata.jsonl</c> (the imagefolder format: <c>file_name</c> and <c>text</c>, plus the rest).</summary>
public sealed record WorldMetadata(
    [property: JsonPropertyName("file_name")] string FileName,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("short_text")] string ShortText,
    [property: JsonPropertyName("split")] string Split,
    [property: JsonPropertyName("index")] long Index,
    [property: JsonPropertyName("scene")] WorldSceneJson Scene,
    [property: JsonPropertyName("mask"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Mask = null);

public sealed record WorldSceneJson(
    [property: JsonPropertyName("background")] string Background,
    [property: JsonPropertyName("objects")] IReadOnlyList<WorldObjectJson> Objects);

/// <summary>An object: kind words and its box (left, top, side) on the 64-pixel canvas.</summary>
public sealed record WorldObjectJson(
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("color")] string Color,
    [property: JsonPropertyName("size")] string Size,
    [property: JsonPropertyName("x")] int X,
    [property: JsonPropertyName("y")] int Y,
    [property: JsonPropertyName("side")] int Side);

/// <summary>What <c>ella world sample</c> and <c>ella world bench</c> write.</summary>
public static class WorldFiles
{
    public const string MetadataFile = "metadata.jsonl";
    public const string CsvFile = "dpg_bench.csv";
    public const string PromptsFolder = "prompts";
    public const string TruthFolder = "truth";
    public const string MasksFolder = "masks";

    static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static WorldSceneJson SceneJson(Scene s) => new(Vocabulary.Word(s.Background),
        s.Objects.Select(o => new WorldObjectJson(Vocabulary.Word(o.Shape), Vocabulary.Word(o.Color), Vocabulary.Word(o.Size), o.X, o.Y, o.Side)).ToList());

    public static IEnumerable<WorldItem> Items(WorldSplit split, long start, int count, long trainSeed)
    {
        if (count < 1) throw new EllaException($"--count must be at least 1, got {count}");
        if (start < 0) throw new EllaException($"--start must be at least 0, got {start}");
        if (WorldSplits.Size(split) is { } n && start + count > n)
            throw new EllaException($"--count {count} (from --start {start}): the {WorldSplits.Name(split)} split has only {n} items");
        for (long i = start; i < start + count; i++) yield return WorldSplits.Item(split, i, trainSeed);
    }

    /// <summary>
    /// Writes <c>&lt;id&gt;.png</c> for each item and <c>metadata.jsonl</c> (one line per image; the file is replaced
    /// atomically at the end). Lines already in the folder's <c>metadata.jsonl</c> for other files are kept first, so
    /// a stream can be continued into the same folder with <c>--start</c>. With <paramref name="masks"/>, each image's
    /// foreground mask is written as <c>masks/&lt;id&gt;.png</c> and named in its line (<c>"mask"</c>). Returns the
    /// number of images written.
    /// </summary>
    public static int WriteSample(string outDir, IEnumerable<WorldItem> items, int size = Vocabulary.CanvasSize, IProgress<int>? progress = null, bool masks = false)
    {
        Directory.CreateDirectory(outDir);
        if (masks) Directory.CreateDirectory(Path.Combine(outDir, MasksFolder));
        string metadataPath = Path.Combine(outDir, MetadataFile);
        var lines = new List<(string File, string Line)>();
        if (File.Exists(metadataPath))
        {
            int number = 0;
            foreach (var line in File.ReadLines(metadataPath))
            {
                number++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                string? file;
                try
                {
                    using var doc = JsonDocument.Parse(line);
                    file = doc.RootElement.GetProperty("file_name").GetString();
                }
                catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
                {
                    throw new EllaException($"{metadataPath}: line {number} is not a metadata record with a file_name; remove the file or choose another --out");
                }
                lines.Add((file ?? "", line));
            }
        }
        var written = new List<(string File, string Line)>();
        foreach (var item in items)
        {
            string file = item.Id + ".png";
            SceneRenderer.Render(item.Scene, size).SavePng(Path.Combine(outDir, file));
            string? mask = masks ? $"{MasksFolder}/{file}" : null;
            if (mask is not null) SceneRenderer.RenderMask(item.Scene, size).SavePng(Path.Combine(outDir, mask));
            var meta = new WorldMetadata(file, item.DenseCaption, item.ShortCaption, WorldSplits.Name(item.Split), item.Index, SceneJson(item.Scene), mask);
            written.Add((file, JsonSerializer.Serialize(meta, Json)));
            progress?.Report(written.Count);
        }
        var replaced = written.Select(w => w.File).ToHashSet();
        var text = new StringBuilder();
        foreach (var (_, line) in lines.Where(l => !replaced.Contains(l.File)).Concat(written)) text.Append(line).Append('\n');
        WriteAtomic(metadataPath, text.ToString());
        return written.Count;
    }

    /// <summary>
    /// A DPG-Bench folder for a split: <c>prompts/&lt;id&gt;.txt</c>, <c>dpg_bench.csv</c> (DPG-Bench's columns; the
    /// tuple carries the structure) and <c>truth/&lt;id&gt;.png</c>, the ground-truth render repeated in a 2×2 grid of
    /// <paramref name="size"/>-pixel cells (what <c>ella dpg score --resolution size</c> reads).
    /// </summary>
    public static int WriteBench(string outDir, WorldSplit split, int size = Vocabulary.CanvasSize)
    {
        int count = WorldSplits.Size(split) ?? throw new EllaException("--split train is an endless stream; a bench is made from eval or paraphrase");
        string prompts = Path.Combine(outDir, PromptsFolder), truth = Path.Combine(outDir, TruthFolder);
        Directory.CreateDirectory(prompts);
        Directory.CreateDirectory(truth);
        var csv = new StringBuilder();
        csv.Append("item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,question_natural_language\n");
        foreach (var item in Items(split, 0, count, 0))
        {
            WriteAtomic(Path.Combine(prompts, item.Id + ".txt"), item.DenseCaption);
            var render = SceneRenderer.Render(item.Scene, size);
            ImageGrid.Make([render, render, render, render], 2).SavePng(Path.Combine(truth, item.Id + ".png"));
            foreach (var q in item.Questions)
                csv.Append(string.Join(',', Csv(item.Id), Csv(item.DenseCaption), "", q.PropositionId.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    Csv(q.DependencyText), q.Tuple.CategoryBroad, q.Tuple.CategoryDetailed, Csv(q.Tuple.ToString()), Csv(q.Question))).Append('\n');
        }
        WriteAtomic(Path.Combine(outDir, CsvFile), csv.ToString());
        return count;
    }

    static string Csv(string s) => s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? $"\"{s.Replace("\"", "\"\"")}\"" : s;

    static void WriteAtomic(string path, string text)
    {
        string tmp = path + $".tmp-{Environment.ProcessId}";
        try
        {
            File.WriteAllText(tmp, text);
            File.Move(tmp, path, true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EllaException($"{path}: cannot write ({e.Message})", e);
        }
    }
}
