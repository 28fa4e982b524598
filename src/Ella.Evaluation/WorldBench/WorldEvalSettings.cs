using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Ella.Hardware;

namespace Ella.Evaluation.WorldBench;

/// <summary>
/// Everything that decides the images of a run, kept in <c>OUT/settings.json</c>: a run resumes into a folder only
/// with the same settings, so no table mixes images made differently.
/// </summary>
public sealed record WorldEvalSettings
{
    public const string FileName = "settings.json";

    [JsonPropertyName("model")] public required string Model { get; init; }
    [JsonPropertyName("images")] public required int Images { get; init; }
    [JsonPropertyName("steps")] public required int Steps { get; init; }
    [JsonPropertyName("guidance")] public required double Guidance { get; init; }
    [JsonPropertyName("scheduler")] public required string Scheduler { get; init; }
    [JsonPropertyName("seed")] public required long Seed { get; init; }
    [JsonPropertyName("dtype")] public required string DType { get; init; }
    [JsonPropertyName("width")] public required int Width { get; init; }
    [JsonPropertyName("height")] public required int Height { get; init; }

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static WorldEvalSettings From(WorldEvalOptions o) => new()
    {
        Model = Path.GetFullPath(o.Model).TrimEnd('/'), Images = o.Images, Steps = o.Steps, Guidance = o.Guidance,
        Scheduler = o.Scheduler.ToLowerInvariant(), Seed = o.Seed, DType = DTypeChoice.Name(o.DType),
        Width = WorldEvaluator.Resolution, Height = WorldEvaluator.Resolution,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Writes the settings into <paramref name="outDir"/>, or checks them against the ones already there.</summary>
    public void WriteOrCheck(string outDir)
    {
        string path = Path.Combine(outDir, FileName);
        if (!File.Exists(path))
        {
            IO.AtomicFile.WriteAllText(path, ToJson());
            return;
        }
        WorldEvalSettings? old;
        try { old = JsonSerializer.Deserialize<WorldEvalSettings>(File.ReadAllText(path)); }
        catch (JsonException e) { throw new EllaException($"{path}: not a world eval settings file ({e.Message}); remove it or choose another --out", e); }
        if (old == null) throw new EllaException($"{path}: empty settings file; remove it or choose another --out");
        var inv = CultureInfo.InvariantCulture;
        (string Flag, string Old, string New)[] fields =
        [
            ("--model", old.Model, Model), ("--images", old.Images.ToString(inv), Images.ToString(inv)), ("--steps", old.Steps.ToString(inv), Steps.ToString(inv)),
            ("--guidance", old.Guidance.ToString("R", inv), Guidance.ToString("R", inv)), ("--scheduler", old.Scheduler, Scheduler),
            ("--seed", old.Seed.ToString(inv), Seed.ToString(inv)), ("--dtype", old.DType, DType),
            ("size", $"{old.Width}x{old.Height}", $"{Width}x{Height}"),
        ];
        foreach (var (flag, was, now) in fields)
            if (was != now)
                throw new EllaException($"--out {outDir} holds images made with {flag} {was} (this run: {flag} {now}); pass the same settings to resume, or choose another --out");
    }
}
