namespace Ella.Tests.Infrastructure;

/// <summary>Sets environment variables for the length of a test and restores them on dispose (the suite runs its tests
/// one at a time: see the assembly's CollectionBehavior).</summary>
public sealed class EnvironmentOverride : IDisposable
{
    readonly Dictionary<string, string?> _saved = new();

    public EnvironmentOverride Set(string name, string? value)
    {
        if (!_saved.ContainsKey(name)) _saved[name] = Environment.GetEnvironmentVariable(name);
        Environment.SetEnvironmentVariable(name, value);
        return this;
    }

    public void Dispose()
    {
        foreach (var (name, value) in _saved) Environment.SetEnvironmentVariable(name, value);
    }
}
