using Ella.Pipelines;

namespace Ella.Tests.Pipelines;

public sealed class ModelLocatorTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-hf-").FullName;
    readonly string? _savedHub = Environment.GetEnvironmentVariable("HF_HUB_CACHE");
    public void Dispose()
    {
        Environment.SetEnvironmentVariable("HF_HUB_CACHE", _savedHub);
        Directory.Delete(_dir, true);
    }

    [Fact]
    public void Repo_ids_resolve_offline_in_the_hugging_face_cache()
    {
        string repo = Path.Combine(_dir, "models--runwayml--stable-diffusion-v1-5");
        Directory.CreateDirectory(Path.Combine(repo, "snapshots", "abc123", "unet"));
        Directory.CreateDirectory(Path.Combine(repo, "snapshots", "old000"));
        Directory.CreateDirectory(Path.Combine(repo, "refs"));
        File.WriteAllText(Path.Combine(repo, "refs", "main"), "abc123\n");
        Environment.SetEnvironmentVariable("HF_HUB_CACHE", _dir);
        Assert.Equal(Path.Combine(repo, "snapshots", "abc123"), ModelLocator.Resolve("runwayml/stable-diffusion-v1-5", "--sd"));
        var e = Assert.Throws<EllaException>(() => ModelLocator.Resolve("google/flan-t5-xl", "--t5"));
        Assert.Contains("never downloads", e.Message);
        Assert.Contains("--t5", e.Message);
    }

    [Fact]
    public void Paths_come_from_options_then_environment()
    {
        string saved = Environment.GetEnvironmentVariable("ELLA_T5") ?? "";
        try
        {
            Environment.SetEnvironmentVariable("ELLA_T5", _dir);
            Assert.Equal(_dir, ModelLocator.Require(null, "ELLA_T5", "--t5", "FLAN-T5"));
            Environment.SetEnvironmentVariable("ELLA_T5", null);
            var e = Assert.Throws<EllaException>(() => ModelLocator.Require(null, "ELLA_T5", "--t5", "FLAN-T5"));
            Assert.Contains("ELLA_T5", e.Message);
        }
        finally { Environment.SetEnvironmentVariable("ELLA_T5", saved.Length > 0 ? saved : null); }
    }
}
