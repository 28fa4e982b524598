using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Ella.Tests.Robustness;

/// <summary>
/// Tiny models assembled from the fixtures into the folders `ella` expects: a complete SD folder (pipeline UNet + VAE +
/// the tiny CLIP text encoder + the real CLIP vocabulary), a T5 folder (tiny T5 + its tokenizer) and a connector that
/// reads the tiny T5's 64-wide features. Components are symlinked, not copied.
/// </summary>
public sealed class TinyModels : IDisposable
{
    public string Root { get; } = Directory.CreateTempSubdirectory("ella-robust-").FullName;
    public string Sd { get; }
    public string T5 { get; }
    public string Ella64 { get; }
    /// <summary>Prompt embeddings [1, 4, 64] and their negative, for runs without T5.</summary>
    public string Embeds { get; }

    readonly int _threads = get_num_threads();

    public TinyModels()
    {
        // One intra-op thread: the tiny models gain nothing from more, and spinning threads on a busy machine cost 20×.
        set_num_threads(1);
        Sd = StableDiffusion("sd", Fixtures.PathOf("diffusion", "pipeline", "model", "unet"), Fixtures.PathOf("diffusion", "pipeline", "model", "vae"), withClip: true);
        T5 = T5Folder("t5");
        Ella64 = Path.Combine(Root, "ella64.safetensors");
        lock (SeedGate)
        {
            manual_seed(7);
            using var connector = new EllaConnector(new EllaConnectorConfig { TimeChannel = 32, TimeEmbedDim = 64, Width = 64, Layers = 2, Heads = 4, NumLatents = 8, InputDim = 64 });
            connector.Save(Ella64);
            Embeds = Path.Combine(Root, "embeds.safetensors");
            using var pe = randn(1, 4, 64);
            using var ne = randn(1, 4, 64);
            Ella.Weights.SafetensorsWriter.Save(Embeds, new Dictionary<string, Tensor> { ["prompt_embeds"] = pe, ["negative_prompt_embeds"] = ne });
        }
    }

    static readonly object SeedGate = new();

    /// <summary>A diffusers SD folder from a UNet and a VAE folder (scheduler from the pipeline fixture; CLIP when asked).</summary>
    public string StableDiffusion(string name, string unet, string vae, bool withClip)
    {
        string dir = Path.Combine(Root, name);
        Directory.CreateDirectory(dir);
        Directory.CreateSymbolicLink(Path.Combine(dir, "unet"), unet);
        Directory.CreateSymbolicLink(Path.Combine(dir, "vae"), vae);
        Directory.CreateSymbolicLink(Path.Combine(dir, "scheduler"), Fixtures.PathOf("diffusion", "pipeline", "model", "scheduler"));
        File.Copy(Fixtures.PathOf("diffusion", "pipeline", "model", "model_index.json"), Path.Combine(dir, "model_index.json"));
        if (withClip)
        {
            Directory.CreateSymbolicLink(Path.Combine(dir, "text_encoder"), Fixtures.PathOf("text", "clip-text"));
            Directory.CreateSymbolicLink(Path.Combine(dir, "tokenizer"), Path.Combine(Fixtures.SharedData, "clip"));
        }
        return dir;
    }

    public string T5Folder(string name)
    {
        string t5 = Path.Combine(Root, name);
        Directory.CreateDirectory(t5);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.PathOf("text", "t5", f), Path.Combine(t5, f));
        foreach (var f in new[] { "spiece.model", "tokenizer_config.json", "special_tokens_map.json" }) File.Copy(Fixtures.PathOf("text", "t5-tokenizer", f), Path.Combine(t5, f));
        return t5;
    }

    /// <summary>A full copy of the SD folder whose files a test may change.</summary>
    public string CopyOfSd(string name)
    {
        string dir = Path.Combine(Root, name);
        foreach (var sub in new[] { "unet", "vae", "scheduler", "text_encoder" })
        {
            string from = Path.Combine(Sd, sub), to = Path.Combine(dir, sub);
            Directory.CreateDirectory(to);
            foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        }
        Directory.CreateSymbolicLink(Path.Combine(dir, "tokenizer"), Path.Combine(Fixtures.SharedData, "clip"));
        File.Copy(Path.Combine(Sd, "model_index.json"), Path.Combine(dir, "model_index.json"));
        return dir;
    }

    /// <summary>Common arguments of a fast `ella generate` (2 steps, 16 px); flags in <paramref name="extra"/> replace them.</summary>
    public string[] Generate(params string[] extra)
    {
        var defaults = new Dictionary<string, string> { ["--sd"] = Sd, ["--t5"] = T5, ["--ella"] = Ella64, ["--steps"] = "2", ["--width"] = "16", ["--height"] = "16", ["--seed"] = "1" };
        foreach (var flag in extra) defaults.Remove(flag);
        return ["generate", .. defaults.SelectMany(kv => new[] { kv.Key, kv.Value }), .. extra];
    }

    /// <summary>Restores the thread count after a run that passed --threads.</summary>
    public static void OneThread() => set_num_threads(1);

    public void Dispose()
    {
        set_num_threads(_threads);
        try { Directory.Delete(Root, true); } catch (IOException) { }
    }
}
