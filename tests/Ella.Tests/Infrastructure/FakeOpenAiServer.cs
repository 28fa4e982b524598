using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Ella.Tests.Infrastructure;

/// <summary>
/// A minimal OpenAI-protocol chat-completions server on 127.0.0.1 (a free port), for judge tests. The reply function
/// sees the request body and returns (HTTP status, assistant text). Every request body is kept.
/// </summary>
public sealed class FakeOpenAiServer : IDisposable
{
    readonly HttpListener _listener = new();
    readonly Func<JsonElement, int, (int Status, string Content)> _reply;
    readonly Task _loop;
    int _count;

    public List<JsonElement> Requests { get; } = new();
    public string Endpoint { get; }

    public FakeOpenAiServer(Func<JsonElement, int, (int Status, string Content)> reply)
    {
        _reply = reply;
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; probe.Stop(); }
        Endpoint = $"http://127.0.0.1:{port}/v1";
        _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        _listener.Start();
        _loop = Task.Run(Loop);
    }

    async Task Loop()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext ctx;
            try { ctx = await _listener.GetContextAsync(); }
            catch (Exception) { return; }
            using var reader = new StreamReader(ctx.Request.InputStream);
            var body = JsonDocument.Parse(await reader.ReadToEndAsync()).RootElement.Clone();
            int n;
            lock (Requests) { Requests.Add(body); n = _count++; }
            var (status, content) = _reply(body, n);
            string json = status == 200
                ? JsonSerializer.Serialize(new
                {
                    id = $"chatcmpl-{n}", @object = "chat.completion", created = 1, model = "fake",
                    choices = new[] { new { index = 0, message = new { role = "assistant", content }, finish_reason = "stop" } },
                    usage = new { prompt_tokens = 1, completion_tokens = 1, total_tokens = 2 },
                })
                : JsonSerializer.Serialize(new { error = new { message = content, type = "server_error" } });
            var bytes = Encoding.UTF8.GetBytes(json);
            ctx.Response.StatusCode = status;
            ctx.Response.ContentType = "application/json";
            await ctx.Response.OutputStream.WriteAsync(bytes);
            ctx.Response.Close();
        }
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
    }
}
