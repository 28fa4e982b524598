using System.Text.Json;

namespace Ella.Server.Api;

/// <summary>Typed reads of a JSON request object; every problem becomes a 400 that names the field.</summary>
public sealed class JsonFields(JsonElement root)
{
    public JsonElement Root { get; } = root;

    /// <summary>Parses a request body: malformed JSON and non-objects are 400, bodies over the limit 413.</summary>
    public static async Task<JsonFields> ReadAsync(HttpRequest request, CancellationToken cancellation)
    {
        try
        {
            using var doc = await JsonDocument.ParseAsync(request.Body, new JsonDocumentOptions { MaxDepth = 16 }, cancellation);
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw ApiError.BadRequest("the request body must be a JSON object", null, "invalid_json");
            return new JsonFields(doc.RootElement.Clone());
        }
        catch (JsonException e)
        {
            throw ApiError.BadRequest($"malformed JSON in the request body: {e.Message}", null, "invalid_json");
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new ApiError(413, "the request body is too large", null, "request_too_large");
        }
    }

    bool TryGet(string name, out JsonElement value)
    {
        if (Root.TryGetProperty(name, out value) && value.ValueKind != JsonValueKind.Null) return true;
        value = default;
        return false;
    }

    public bool Has(string name) => TryGet(name, out _);

    public string? String(string name, int? maxLength = null)
    {
        if (!TryGet(name, out var v)) return null;
        if (v.ValueKind != JsonValueKind.String) throw ApiError.BadRequest($"'{name}' must be a string", name, "invalid_type");
        var s = v.GetString()!;
        if (maxLength is { } max && s.Length > max)
            throw ApiError.BadRequest($"'{name}' is {s.Length} characters long; the limit is {max}", name, "string_above_max_length");
        return s;
    }

    public long? Integer(string name, long min, long max)
    {
        if (!TryGet(name, out var v)) return null;
        long value;
        if (v.ValueKind != JsonValueKind.Number) throw ApiError.BadRequest($"'{name}' must be an integer", name, "invalid_type");
        if (!v.TryGetInt64(out value))
        {
            // 20.0 is an integer too; 20.5 is not.
            if (!v.TryGetDouble(out var d) || d != Math.Floor(d) || Math.Abs(d) > 9e15) throw ApiError.BadRequest($"'{name}' must be an integer", name, "invalid_type");
            value = (long)d;
        }
        if (value < min || value > max) throw ApiError.BadRequest($"'{name}' must be between {min} and {max}, got {value}", name, "integer_out_of_range");
        return value;
    }

    public double? Number(string name, double min, double max)
    {
        if (!TryGet(name, out var v)) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d) || !double.IsFinite(d)) throw ApiError.BadRequest($"'{name}' must be a number", name, "invalid_type");
        if (d < min || d > max) throw ApiError.BadRequest($"'{name}' must be between {min} and {max}, got {d}", name, "number_out_of_range");
        return d;
    }

    public bool? Boolean(string name)
    {
        if (!TryGet(name, out var v)) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiError.BadRequest($"'{name}' must be true or false", name, "invalid_type"),
        };
    }
}
