using Ella.Schedulers;

namespace Ella.Server.Api;

/// <summary>Sampler names: ours (dpm++2m, euler-a, …, see <see cref="SchedulerFactory.Names"/>) and Automatic1111's.</summary>
public static class Samplers
{
    /// <summary>Automatic1111 sampler names and the scheduler of ours that is the same algorithm.</summary>
    public static readonly IReadOnlyDictionary<string, string> Automatic1111 = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["DPM++ 2M"] = "dpm++2m",
        ["DPM++ 2M Karras"] = "dpm++2m-karras",
        ["Euler a"] = "euler-a",
        ["Euler"] = "euler",
        ["DDIM"] = "ddim",
        ["PLMS"] = "pndm",
        ["LMS"] = "lms",
    };

    /// <summary>Our scheduler for a sampler name (ours or A1111's); A1111 ≥ 1.9 gives the noise schedule apart, as
    /// <c>scheduler</c> ("Automatic", "Karras"). Null when unknown.</summary>
    public static string? Resolve(string sampler, string? a1111Schedule = null)
    {
        string? ours = Automatic1111.TryGetValue(sampler.Trim(), out var mapped) ? mapped
            : SchedulerFactory.Names.Contains(sampler.Trim().ToLowerInvariant()) ? sampler.Trim().ToLowerInvariant() : null;
        if (ours == null) return null;
        return a1111Schedule?.Trim().ToLowerInvariant() switch
        {
            null or "" or "automatic" => ours,
            "karras" when ours is "dpm++2m" or "dpm++2m-karras" => "dpm++2m-karras",
            _ => null,
        };
    }

    /// <summary>The A1111 name of one of our schedulers (for /sdapi/v1/samplers and the info text).</summary>
    public static string Automatic1111Name(string ours) =>
        Automatic1111.FirstOrDefault(kv => kv.Value == ours.ToLowerInvariant()).Key ?? ours;
}
