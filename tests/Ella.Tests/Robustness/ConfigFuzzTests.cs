using System.Text.Json;
using System.Text.Json.Nodes;
using Ella.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Ella.Tests.Robustness;

/// <summary>
/// Every key of every config file the tiny models use (unet, vae and text_encoder config.json, scheduler_config.json,
/// model_index.json, the T5 config.json, ella_config.json) removed, or set to null, the wrong type, a negative, zero or
/// absurd size; and each file as a whole empty, truncated or not an object. `ella generate` (and `ella inspect` for
/// model_index.json) then works or stops with exit code 2 and one line naming the file (or the weights file it was
/// checked against) — never an internal error, never an allocation the weights do not back. The CI run takes every
/// k-th case (ELLA_FUZZ_CONFIG=all runs them all).
/// </summary>
public sealed class ConfigFuzzTests : IDisposable
{
    readonly TinyModels _m = new();
    readonly ITestOutputHelper _log;
    public ConfigFuzzTests(ITestOutputHelper log) => _log = log;
    public void Dispose() => _m.Dispose();

    static readonly (string Kind, JsonNode? Value)[] ValueMutations =
    [
        ("null", null), ("string", JsonValue.Create("x")), ("negative", JsonValue.Create(-1)), ("zero", JsonValue.Create(0)),
        ("absurd", JsonValue.Create(1000000)), ("float", JsonValue.Create(2.5)), ("bool", JsonValue.Create(true)),
        ("empty-array", new JsonArray()), ("object", new JsonObject()), ("absurd-array", new JsonArray(1000000)),
        ("int-overflow", JsonValue.Create(2147483648L)),
    ];

    static readonly (string Kind, string Text)[] FileMutations =
    [
        ("empty-file", ""), ("truncated", "{\"a\": "), ("array", "[]"), ("null", "null"), ("number", "42"), ("garbage", "\u0000\u0001PNG"),
    ];

    sealed record Case(string File, string Kind, string Key, string Text);

    IEnumerable<Case> Cases(string sd, string t5, string ellaConfig)
    {
        var files = new[]
        {
            Path.Combine(sd, "unet", "config.json"), Path.Combine(sd, "vae", "config.json"), Path.Combine(sd, "text_encoder", "config.json"),
            Path.Combine(sd, "scheduler", "scheduler_config.json"), Path.Combine(sd, "model_index.json"), Path.Combine(t5, "config.json"), ellaConfig,
        };
        foreach (var file in files)
        {
            string original = File.ReadAllText(file);
            var root = JsonNode.Parse(original)!.AsObject();
            foreach (var key in root.Select(p => p.Key).ToList())
            {
                var removed = JsonNode.Parse(original)!.AsObject();
                removed.Remove(key);
                yield return new Case(file, "missing", key, removed.ToJsonString());
                foreach (var (kind, value) in ValueMutations)
                {
                    var changed = JsonNode.Parse(original)!.AsObject();
                    changed[key] = value?.DeepClone();
                    yield return new Case(file, kind, key, changed.ToJsonString());
                }
            }
            foreach (var (kind, text) in FileMutations) yield return new Case(file, kind, "(file)", text);
        }
    }

    [Fact]
    public void Mutated_configs_work_or_get_one_line_naming_the_file()
    {
        string sd = _m.CopyOfSd("sd-mut");
        string t5 = _m.T5Folder("t5-mut");
        string ellaDir = Path.Combine(_m.Root, "ella-mut");
        Directory.CreateDirectory(ellaDir);
        string ella = Path.Combine(ellaDir, "connector.safetensors");
        File.Copy(_m.Ella64, ella);
        string ellaConfig = Path.Combine(ellaDir, "ella_config.json");
        File.WriteAllText(ellaConfig, """{"time_channel": 32, "time_embed_dim": 64, "width": 64, "layers": 2, "heads": 4, "num_latents": 8, "input_dim": 64}""");

        bool all = Environment.GetEnvironmentVariable("ELLA_FUZZ_CONFIG") == "all";
        var cases = Cases(sd, t5, ellaConfig).ToList();
        int stride = all ? 1 : 15;
        int tried = 0, worked = 0, refused = 0;
        var failures = new List<string>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int i = 0; i < cases.Count; i += stride)
        {
            var c = cases[i];
            string original = File.ReadAllText(c.File);
            File.WriteAllText(c.File, c.Text);
            try
            {
                bool index = Path.GetFileName(c.File) == "model_index.json";
                string mode = c.File.Contains("text_encoder") ? "clip" : "ella";
                var r = index ? CliRunner.Run("inspect", sd)
                    : CliRunner.Run("generate", "--sd", sd, "--t5", t5, "--ella", ella, "--mode", mode, "--prompt", "a cube", "--steps", "1",
                        "--width", "16", "--height", "16", "--seed", "1", "-o", Path.Combine(_m.Root, "cfg.png"));
                tried++;
                string what = $"{Path.GetRelativePath(_m.Root, c.File)} {c.Key} → {c.Kind}";
                if (r.ExitCode == 0) { worked++; continue; }
                var errors = r.Error.Split('\n').Where(l => l.StartsWith("error:")).ToList();
                string folder = Path.GetDirectoryName(c.File)!;
                bool names = errors.Count == 1 && (errors[0].Contains(c.File) || errors[0].Contains(folder));
                if (r.ExitCode != 2 || r.Error.Contains("internal error") || r.Error.Contains("   at ") || !names)
                    failures.Add($"{what}: exit {r.ExitCode}: {r.Error.Trim()}");
                else refused++;
            }
            finally { File.WriteAllText(c.File, original); }
        }
        _log.WriteLine($"{tried} of {cases.Count} config mutations in {clock.Elapsed.TotalSeconds:F1} s: {worked} worked, {refused} refused with one line, {failures.Count} failed");
        Assert.True(failures.Count == 0, $"{failures.Count} of {tried} mutations failed:\n{string.Join("\n", failures.Take(40))}");
    }

    [Fact]
    public void A_config_far_beyond_its_weights_is_refused_from_the_header_before_allocating()
    {
        string sd = _m.CopyOfSd("sd-huge");
        foreach (var (sub, key) in new[] { ("unet", "block_out_channels"), ("vae", "block_out_channels") })
        {
            string file = Path.Combine(sd, sub, "config.json");
            string original = File.ReadAllText(file);
            var cfg = JsonNode.Parse(original)!.AsObject();
            int n = cfg[key]!.AsArray().Count;
            cfg[key] = new JsonArray(Enumerable.Repeat(0, n).Select(_ => (JsonNode?)JsonValue.Create(1000000)).ToArray());
            if (sub == "unet") cfg["attention_head_dim"] = 8;
            File.WriteAllText(file, cfg.ToJsonString());
            double before = Ella.Diagnostics.ProcessMemory.RssMb();
            Ella.Diagnostics.ProcessMemory.ResetPeak();
            var r = CliRunner.Run("generate", "--sd", sd, "--mode", "clip", "--prompt", "a cube", "--steps", "1", "--width", "16", "--height", "16", "-o", Path.Combine(_m.Root, "h.png"));
            double peak = Ella.Diagnostics.ProcessMemory.PeakRssMb();
            File.WriteAllText(file, original);
            Assert.True(r.ExitCode == 2, r.Error);
            Assert.Contains(Path.Combine(sd, sub), r.Error);
            Assert.Contains("shape", r.Error);
            // 1,000,000² × 3 × 3 float32 would be 36 TB: nothing near that was touched.
            Assert.True(peak - before < 2048, $"peak RSS grew by {peak - before:F0} MB");
        }
    }
}
