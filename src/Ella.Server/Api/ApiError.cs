using System.Text.Json.Serialization;

namespace Ella.Server.Api;

/// <summary>
/// An error as OpenAI's API returns it, <c>{"error": {"message", "type", "param", "code"}}</c>, with its HTTP status.
/// Thrown by request parsing and validation; the endpoints turn it into the response.
/// </summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null, string? type = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type ?? status switch
    {
        429 => "requests",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };
    /// <summary>Seconds a 429 or 503 asks the client to wait.</summary>
    public int? RetryAfterSeconds { get; init; }

    public static ApiError BadRequest(string message, string? param, string code = "invalid_value") => new(400, message, param, code);

    public ErrorBody Body() => new(new ErrorDetail(Message, Type, Param, Code));

    public sealed record ErrorBody([property: JsonPropertyName("error")] ErrorDetail Error);

    public sealed record ErrorDetail(
        [property: JsonPropertyName("message")] string Message,
        [property: JsonPropertyName("type")] string Type,
        [property: JsonPropertyName("param")] string? Param,
        [property: JsonPropertyName("code")] string? Code);
}
