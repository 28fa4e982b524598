using System.Security.Cryptography;

namespace Ella.Server.Jobs;

/// <summary>
/// PNGs for <c>response_format: url</c>, downloadable from /v1/files/&lt;id&gt;.png for a limited time. The id is 128
/// random bits, so the URL itself is the permission (like OpenAI's signed URLs): image tags can load it without a key.
/// </summary>
public sealed class FileStore(TimeSpan ttl, int maxFiles, TimeProvider? clock = null)
{
    readonly TimeProvider _clock = clock ?? TimeProvider.System;
    readonly object _lock = new();
    readonly Dictionary<string, (byte[] Png, DateTimeOffset Expires)> _files = [];
    readonly Queue<string> _order = new();

    public string Add(byte[] png)
    {
        string id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)) + ".png";
        lock (_lock)
        {
            Prune();
            while (_files.Count >= maxFiles && _order.TryDequeue(out var oldest)) _files.Remove(oldest);
            _files[id] = (png, _clock.GetUtcNow() + ttl);
            _order.Enqueue(id);
        }
        return id;
    }

    public byte[]? Get(string id)
    {
        lock (_lock)
        {
            Prune();
            return _files.TryGetValue(id, out var f) ? f.Png : null;
        }
    }

    public int Count { get { lock (_lock) return _files.Count; } }

    void Prune()
    {
        var now = _clock.GetUtcNow();
        while (_order.TryPeek(out var id) && (!_files.TryGetValue(id, out var f) || f.Expires <= now))
        {
            _order.Dequeue();
            _files.Remove(id);
        }
    }
}
