using System.Runtime.CompilerServices;
using System.Text.Json;
using Ella.Native;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Ella.Tests.Infrastructure;

/// <summary>Locates the oracle fixtures: $ELLA_FIXTURES, else the repository's own copy in tests/fixtures (data in tests/data).</summary>
public static class Fixtures
{
    [ModuleInitializer]
    internal static void InitTorch() => TorchRuntime.Initialize();

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Root { get; } = Environment.GetEnvironmentVariable("ELLA_FIXTURES") is { Length: > 0 } env
        ? Path.GetFullPath(env)
        : Path.GetFullPath(Path.Combine(RepoRoot, "tests", "fixtures"));

    /// <summary>Real data the tests use (CLIP vocabulary, DPG-Bench prompts, NLTK tagger): the repository's tests/data.</summary>
    public static string SharedData { get; } = Path.GetFullPath(Path.Combine(RepoRoot, "tests", "data"));

    public static string PathOf(params string[] parts) => Path.Combine([Root, .. parts]);

    static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir != null && !File.Exists(Path.Combine(dir.FullName, "EllaSharp.slnx"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("EllaSharp.slnx not found above " + AppContext.BaseDirectory);
    }

    public static JsonDocument Json(params string[] parts) => JsonDocument.Parse(File.ReadAllText(PathOf(parts)));

    /// <summary>All tensors of a fixture safetensors file, as float32 unless they are integer.</summary>
    public static Dictionary<string, Tensor> Load(string path)
    {
        using var f = SafetensorsFile.Open(path);
        var result = new Dictionary<string, Tensor>();
        foreach (var name in f.Names) result[name] = f.Read(name).DetachFromDisposeScope();
        return result;
    }
}

public static class TensorAssert
{
    /// <summary>The project's fp32 tolerance: max |ours − ref| ≤ 1e-4 · max(1, max |ref|).</summary>
    public static void Close(Tensor expected, Tensor actual, string what, double relTol = 1e-4)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}] != expected [{string.Join(",", expected.shape)}]");
        using var e = expected.to_type(ScalarType.Float64);
        using var a = actual.to_type(ScalarType.Float64);
        double maxRef = e.abs().max().item<double>();
        double maxErr = (a - e).abs().max().item<double>();
        double tol = relTol * Math.Max(1.0, maxRef);
        Assert.True(maxErr <= tol, $"{what}: max abs error {maxErr:E3} > tolerance {tol:E3} (max |ref| {maxRef:F4})");
        Assert.False(double.IsNaN(maxErr), $"{what}: NaN in output");
    }
}
