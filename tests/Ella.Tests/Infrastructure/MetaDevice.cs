using static TorchSharp.torch;

namespace Ella.Tests.Infrastructure;

/// <summary>Builds modules on the meta device: shapes and names without allocating weights.</summary>
public static class MetaDevice
{
    static readonly object Gate = new();

    public static T Build<T>(Func<T> factory)
    {
        lock (Gate)
        {
            var previous = get_default_device();
            set_default_device(META);
            try { return factory(); }
            finally { set_default_device(previous); }
        }
    }

    public static List<(string Key, long[] Shape)> Manifest(IEnumerable<System.Text.Json.JsonElement> entries) =>
        entries.Select(e => (e.GetProperty("key").GetString()!, e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray())).ToList();
}
