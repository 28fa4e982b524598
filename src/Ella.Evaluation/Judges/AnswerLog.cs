using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ella.Evaluation.Judges;

/// <summary>A line of an answers JSONL file: {"item_id", "crop", "proposition_id", "question", "answer"} (+ "raw").</summary>
public sealed record AnswerRecord(
    [property: JsonPropertyName("item_id")] string ItemId,
    [property: JsonPropertyName("crop")] int Crop,
    [property: JsonPropertyName("proposition_id")] int PropositionId,
    [property: JsonPropertyName("question")] string Question,
    [property: JsonPropertyName("answer")] string Answer,
    [property: JsonPropertyName("raw")] string? Raw = null);

/// <summary>Reads and appends answers JSONL files (the fixture format); appends are flushed line by line.</summary>
public static class AnswerLog
{
    static readonly JsonSerializerOptions Options = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public static Dictionary<(string, int, int), AnswerRecord> Read(string path)
    {
        var result = new Dictionary<(string, int, int), AnswerRecord>();
        if (!File.Exists(path)) return result;
        int line = 0;
        var lines = File.ReadAllLines(path);
        // An interrupted append can leave a last line without its newline: it is dropped (and asked again).
        bool partialLast = new FileInfo(path).Length > 0 && !EndsWithNewline(path);
        foreach (var text in lines)
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            AnswerRecord? r;
            try { r = JsonSerializer.Deserialize<AnswerRecord>(text); }
            catch (JsonException) when (partialLast && line == lines.Length) { break; }
            catch (JsonException e) { throw new EllaException($"{path}: line {line}: not a JSON answer record ({e.Message})", e); }
            if (r?.ItemId == null || r.Answer == null) throw new EllaException($"{path}: line {line}: needs item_id, crop, proposition_id and answer");
            result[(r.ItemId, r.Crop, r.PropositionId)] = r;
        }
        return result;
    }

    static bool EndsWithNewline(string path)
    {
        using var f = File.OpenRead(path);
        f.Seek(-1, SeekOrigin.End);
        return f.ReadByte() == '\n';
    }

    public static string Serialize(AnswerRecord r) => JsonSerializer.Serialize(r, Options);
}
