using System.Text.Json;
using Ella.Configs;
using Ella.Pipelines.Compatibility;
using Ella.Tests.Infrastructure;
using Ella.Weights;

namespace Ella.Tests.Robustness;

/// <summary>
/// Every combination of the fixture models (UNets × VAEs × connectors × T5 × CLIP, in each mode) either generates an
/// image or is refused by one line that names both files and both numbers; never an internal error. Whether a
/// combination should work is decided here from the configs, independently of the checker.
/// </summary>
public sealed class CompatibilityTests : IDisposable
{
    readonly TinyModels _m = new();
    public void Dispose() => _m.Dispose();

    static string ClassOf(string config)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(config));
        var r = doc.RootElement;
        return r.TryGetProperty("_class_name", out var c) ? c.GetString()! : r.TryGetProperty("model_type", out var t) ? t.GetString()! : "";
    }

    static List<string> FixtureModels(string kind) => Directory.EnumerateFiles(Fixtures.Root, "config.json", SearchOption.AllDirectories)
        .Where(f => ClassOf(f) == kind).Select(Path.GetDirectoryName).Cast<string>().OrderBy(x => x, StringComparer.Ordinal).ToList();

    static int Int(string config, string key)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(config, "config.json")));
        return doc.RootElement.GetProperty(key).GetInt32();
    }

    List<string> Connectors()
    {
        var found = Directory.EnumerateFiles(Fixtures.Root, "*.safetensors", SearchOption.AllDirectories)
            .Where(f => Path.GetFileName(f).Contains("ella", StringComparison.OrdinalIgnoreCase))
            .Where(f => { using var s = SafetensorsFile.Open(f); return s.Contains("connector.latents"); })
            .OrderBy(x => x, StringComparer.Ordinal).ToList();
        return [.. found, _m.Ella64];
    }

    [Fact]
    public void Every_combination_of_the_fixture_models_works_or_gets_one_clear_line()
    {
        var unets = FixtureModels("UNet2DConditionModel");
        var vaes = FixtureModels("AutoencoderKL");
        var t5s = FixtureModels("t5");
        var clips = FixtureModels("clip_text_model");
        var connectors = Connectors();
        Assert.True(unets.Count >= 3 && vaes.Count >= 2 && t5s.Count >= 1 && clips.Count >= 1 && connectors.Count >= 3,
            $"fixture models: {unets.Count} UNets, {vaes.Count} VAEs, {t5s.Count} T5, {clips.Count} CLIP, {connectors.Count} connectors");

        int runs = 0, worked = 0, refused = 0;
        var failures = new List<string>();
        int n = 0;
        foreach (var unet in unets)
        foreach (var vae in vaes)
        foreach (var clipModel in clips)
        {
            string sd = _m.StableDiffusion($"sd{n++}", unet, vae, withClip: false);
            Directory.CreateSymbolicLink(Path.Combine(sd, "text_encoder"), clipModel);
            Directory.CreateSymbolicLink(Path.Combine(sd, "tokenizer"), Path.Combine(Fixtures.SharedData, "clip"));
            int cross = Int(unet, "cross_attention_dim"), inCh = Int(unet, "in_channels"), latent = Int(vae, "latent_channels");
            int clipWidth = Int(clipModel, "hidden_size");
            foreach (var t5Model in t5s)
            {
                string t5 = _m.T5Folder($"t5-{n++}");
                foreach (var f in Directory.GetFiles(t5Model, "*.json").Concat(Directory.GetFiles(t5Model, "model.safetensors")))
                    File.Copy(f, Path.Combine(t5, Path.GetFileName(f)), overwrite: true);
                int dModel = Int(t5Model, "d_model");
                foreach (var mode in new[] { "ella", "clip", "ella+clip" })
                foreach (var connector in mode == "clip" ? connectors.Take(1) : connectors)
                {
                    using var src = Checkpoint.Open(connector);
                    var cc = EllaConnectorConfig.Resolve(connector, src);
                    bool ella = mode != "clip", clip = mode != "ella";
                    var why = new List<string>();
                    if (ella && (cc.InputDim ?? cc.Width) != dModel) why.Add($"{cc.InputDim ?? cc.Width}");
                    if (ella && cc.ConditionWidth != cross) why.Add($"{cross}");
                    if (clip && clipWidth != cross) why.Add($"{cross}");
                    if (inCh != latent) why.Add($"{inCh}");
                    var r = CliRunner.Run("generate", "--sd", sd, "--t5", t5, "--ella", connector, "--mode", mode, "--prompt", "a red cube",
                        "--steps", "1", "--width", "16", "--height", "16", "--seed", "3", "-o", Path.Combine(_m.Root, $"out{runs}.png"));
                    runs++;
                    string what = $"unet {Rel(unet)}, vae {Rel(vae)}, clip {Rel(clipModel)}, t5 {Rel(t5Model)}, ella {Rel(connector)}, mode {mode}";
                    if (why.Count == 0)
                    {
                        if (r.ExitCode == 0) worked++;
                        else failures.Add($"{what}: should work, got exit {r.ExitCode}: {r.Error}");
                        continue;
                    }
                    var errors = r.Error.Split('\n').Where(l => l.StartsWith("error:")).ToList();
                    if (r.ExitCode != 2 || errors.Count != 1 || r.Error.Contains("internal error") || r.Error.Contains("   at "))
                        failures.Add($"{what}: expected one error line and exit 2, got exit {r.ExitCode}: {r.Error}");
                    else if (!why.Any(errors[0].Contains) || !errors[0].Contains('/'))
                        failures.Add($"{what}: the line does not name the numbers ({string.Join(", ", why)}) and files: {errors[0]}");
                    else refused++;
                }
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {runs} combinations failed:\n{string.Join("\n", failures)}");
        Assert.True(worked > 0 && refused > 0, $"{worked} worked, {refused} refused");
    }

    static string Rel(string p) => Path.GetRelativePath(Fixtures.Root, p);

    [Fact]
    public void The_issue_example_names_both_files_both_widths_and_what_fits()
    {
        // A T5 whose config says FLAN-T5-large (1024) with a connector that expects FLAN-T5-XL's 2048-wide features.
        var facts = new ModelFacts
        {
            T5DModel = new(1024, "/hf/models--google--flan-t5-large/snapshots/x/config.json", "d_model"),
            T5Name = ModelFacts.DisplayName("/hf/models--google--flan-t5-large/snapshots/x"),
            ConnectorInputDim = new(2048, "/m/ella-sd1.5-tsc-t5xl.safetensors", "input_dim"),
        };
        var line = Assert.Single(ModelCompatibility.Problems(facts, usesClip: false));
        Assert.Contains("expects 2048-wide", line);
        Assert.Contains("FLAN-T5-XL", line);
        Assert.Contains("google/flan-t5-large", line);
        Assert.Contains("produces 1024", line);
        Assert.Contains("ella-sd1.5-tsc-t5xl.safetensors", line);
        Assert.DoesNotContain('\n', line);
    }

    [Fact]
    public void ControlNets_are_checked_against_each_fixture_UNet()
    {
        var unets = FixtureModels("UNet2DConditionModel");
        foreach (var controlnet in FixtureModels("ControlNetModel"))
        foreach (var unet in unets)
        {
            var cfg = UNet2DConditionConfig.Load(unet);
            var problems = ModelCompatibility.ControlNetProblems(Path.Combine(controlnet, "config.json"), cfg, unet);
            int cross = Int(controlnet, "cross_attention_dim");
            bool fits = cross == cfg.CrossAttentionDim && Int(controlnet, "block_out_channels".Length > 0 ? "in_channels" : "") is var inCh
                        && (inCh == cfg.InChannels || cfg.InChannels == 2 * inCh + 1);
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(controlnet, "config.json")));
            fits &= doc.RootElement.GetProperty("block_out_channels").EnumerateArray().Select(e => e.GetInt32()).SequenceEqual(cfg.BlockOutChannels);
            Assert.True(fits == (problems.Count == 0), $"{Rel(controlnet)} with {Rel(unet)}: fits={fits}, problems: {string.Join(" | ", problems)}");
            foreach (var p in problems) Assert.Contains(controlnet, p);
        }
    }
}
