using Ella.Lora;
using Ella.Modules.Clip;
using Ella.Modules.UNet;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Tools;

/// <summary>LoRA merging against the fixture's expected merged tensors (kohya and PEFT layouts), bit-exact unmerge,
/// warnings and errors.</summary>
public sealed class LoraTests : IDisposable
{
    /// <summary>A folder of this test's own, deleted after it.</summary>
    readonly string _dir = Directory.CreateTempSubdirectory("ella-lora-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    static string Dir => ToolsFixtureTests.Dir;
    /// <summary>Same dtype, shape and bits (float32 tensors).</summary>
    static bool BitEqual(Tensor a, Tensor b) =>
        a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) &&
        System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(a.contiguous().data<float>().ToArray())
            .SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(b.contiguous().data<float>().ToArray()));

    static string UnetDir => Path.Combine(Dir, "..", "diffusion", "pipeline", "model", "unet");

    /// <summary>Every (LoRA file, expected merged file, multiplier) the fixture folder holds: lora_X.safetensors with
    /// lora_X_merged_xM.safetensors.</summary>
    public static IEnumerable<object[]> MergedCases() =>
        Directory.EnumerateFiles(Dir, "lora_*_merged_x*.safetensors").Select(f =>
        {
            string name = Path.GetFileNameWithoutExtension(f);
            int at = name.IndexOf("_merged_x", StringComparison.Ordinal);
            return new object[] { name[..at] + ".safetensors", Path.GetFileName(f), double.Parse(name[(at + "_merged_x".Length)..], System.Globalization.CultureInfo.InvariantCulture) };
        }).OrderBy(c => (string)c[0]);

    [Theory]
    [MemberData(nameof(MergedCases))]
    public void Merged_weights_match_and_unmerge_restores_the_bits(string lora, string merged, double multiplier)
    {
        using var unet = UNet2DConditionModel.FromPretrained(UnetDir);
        var before = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var patcher = new LoraPatcher(unet, null);
        var warnings = new List<string>();
        patcher.Use([new LoraSpec(Path.Combine(Dir, lora), multiplier)], warnings);
        Assert.Empty(warnings);
        var state = unet.state_dict();
        using var expected = SafetensorsFile.Open(Path.Combine(Dir, merged));
        foreach (var name in expected.Names)
        {
            using var e = expected.Read(name, ScalarType.Float32);
            double diff = (state[name] - e).abs().max().item<float>();
            Assert.True(diff <= 1e-6, $"{lora} ×{multiplier}: {name} differs by {diff}");
        }
        // Only the expected weights changed.
        foreach (var (name, value) in before)
            if (!expected.Contains(name)) Assert.True(BitEqual(value, state[name]), $"{name} changed but is not a LoRA target");
        patcher.Use([]);
        foreach (var (name, value) in before)
            Assert.True(BitEqual(value, state[name]), $"{name} not restored bit for bit after unmerge");
    }

    [Fact]
    public void Multiplier_in_the_cli_form_is_parsed()
    {
        Assert.Equal(new LoraSpec("a/b.safetensors", 0.8), LoraSpec.Parse("a/b.safetensors:0.8"));
        Assert.Equal(new LoraSpec("a/b.safetensors", 1.0), LoraSpec.Parse("a/b.safetensors"));
        Assert.Equal(new LoraSpec("C:x", 1.0), LoraSpec.Parse("C:x"));
    }

    [Fact]
    public void Prompt_tags_are_removed_and_resolved()
    {
        var (prompt, tags) = LoraPromptTags.Extract("a cat <lora:style_a:0.8> in a hat <lora:b>");
        Assert.Equal("a cat in a hat", prompt);
        Assert.Equal([("style_a", 0.8), ("b", 1.0)], tags);
        Assert.Equal("no tags here", LoraPromptTags.Extract("no tags here").Prompt);
        string dir = _dir;
        File.WriteAllText(Path.Combine(dir, "style_a.safetensors"), "");
        Assert.Equal(Path.Combine(dir, "style_a.safetensors"), LoraPromptTags.Resolve("style_a", dir));
        var e = Assert.Throws<EllaException>(() => LoraPromptTags.Resolve("missing", dir));
        Assert.Contains("missing.safetensors", e.Message);
        Assert.Throws<EllaException>(() => LoraPromptTags.Resolve("style_a", null));
    }

    [Fact]
    public void Unmatched_keys_are_warned_and_a_file_matching_nothing_is_an_error()
    {
        using var unet = UNet2DConditionModel.FromPretrained(UnetDir);
        string dir = _dir;
        string good = Path.Combine(dir, "partial.safetensors"), bad = Path.Combine(dir, "nothing.safetensors");
        SafetensorsWriter.Save(good, new Dictionary<string, Tensor>
        {
            ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"] = ones(2, 32),
            ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"] = ones(32, 2),
            ["lora_unet_no_such_module.lora_down.weight"] = ones(2, 32),
            ["lora_unet_no_such_module.lora_up.weight"] = ones(32, 2),
        });
        SafetensorsWriter.Save(bad, new Dictionary<string, Tensor>
        {
            ["lora_unet_no_such_module.lora_down.weight"] = ones(2, 32),
            ["lora_unet_no_such_module.lora_up.weight"] = ones(32, 2),
        });
        using var patcher = new LoraPatcher(unet, null);
        var warnings = new List<string>();
        patcher.Use([new LoraSpec(good)], warnings);
        Assert.Contains(warnings, w => w.Contains("lora_unet_no_such_module"));
        var e = Assert.Throws<EllaException>(() => patcher.Use([new LoraSpec(bad)]));
        Assert.Contains(bad, e.Message);
    }

    /// <summary>A server switching sets: A, B, A again and none. The originals are kept between switches, so each merge
    /// equals a fresh merge into the original weights and the last unmerge restores every bit.</summary>
    [Fact]
    public void Switching_loras_many_times_merges_from_the_originals_and_restores_the_bits()
    {
        var cases = MergedCases().Take(2).ToList();
        Assert.True(cases.Count == 2, "the fixture holds at least two merged LoRA cases");
        using var unet = UNet2DConditionModel.FromPretrained(UnetDir);
        var before = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var patcher = new LoraPatcher(unet, null);
        foreach (var c in new[] { cases[0], cases[1], cases[0], cases[1] })
        {
            var spec = new LoraSpec(Path.Combine(Dir, (string)c[0]), (double)c[2]);
            Assert.True(patcher.Use([spec]));
            Assert.False(patcher.Use([spec]));
            using var expected = SafetensorsFile.Open(Path.Combine(Dir, (string)c[1]));
            var state = unet.state_dict();
            foreach (var name in expected.Names)
            {
                using var e = expected.Read(name, ScalarType.Float32);
                double diff = (state[name] - e).abs().max().item<float>();
                Assert.True(diff <= 1e-6, $"{c[0]} after switching: {name} differs by {diff}");
            }
        }
        patcher.Use([]);
        var after = unet.state_dict();
        foreach (var (name, value) in before)
            Assert.True(BitEqual(value, after[name]), $"{name} not restored bit for bit after four switches");
    }

    [Fact]
    public void Text_encoder_lora_changes_clip()
    {
        var clipDir = Fixtures.PathOf("text", "clip-text");
        using var unet = UNet2DConditionModel.FromPretrained(UnetDir);
        using var clip = ClipTextModel.FromPretrained(clipDir);
        string q = "text_model.encoder.layers.0.self_attn.q_proj.weight";
        var before = clip.state_dict()[q].clone();
        long width = before.shape[1];
        string dir = _dir;
        string file = Path.Combine(dir, "te.safetensors");
        SafetensorsWriter.Save(file, new Dictionary<string, Tensor>
        {
            ["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = full(1, width, 0.5f),
            ["lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = full(width, 1, 0.5f),
            ["lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha"] = tensor(2f),
        });
        using var patcher = new LoraPatcher(unet, clip);
        patcher.Use([new LoraSpec(file, 0.5)]);
        // 0.5 · (alpha 2 / rank 1) · 0.25 = 0.25 added to every element
        Assert.True(((clip.state_dict()[q] - before) - 0.25).abs().max().item<float>() < 1e-6);
        patcher.Use([]);
        Assert.True(BitEqual(before, clip.state_dict()[q]));
    }

    /// <summary>Weights loaded from a checkpoint and unchanged since are restored by reading the checkpoint again: no
    /// copy is kept in memory, and the restore is bit for bit (bf16 too, through the load's own conversion).</summary>
    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void Originals_loaded_from_a_checkpoint_are_read_again_from_it_not_copied(ScalarType dtype)
    {
        var c = MergedCases().First();
        using var unet = UNet2DConditionModel.FromPretrained(UnetDir, dtype);
        var before = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var patcher = new LoraPatcher(unet, null);
        patcher.Use([new LoraSpec(Path.Combine(Dir, (string)c[0]), (double)c[2])]);
        var (fromCheckpoint, inMemory, bytes) = patcher.Originals;
        using var expected = SafetensorsFile.Open(Path.Combine(Dir, (string)c[1]));
        Assert.Equal(expected.Names.Count, fromCheckpoint);
        Assert.Equal((0, 0L), (inMemory, bytes));
        Assert.Contains(before, kv => !kv.Value.view(-1).bytes.SequenceEqual(unet.state_dict()[kv.Key].view(-1).bytes));
        patcher.Use([]);
        foreach (var (name, value) in before)
            Assert.True(value.view(-1).bytes.SequenceEqual(unet.state_dict()[name].view(-1).bytes), $"{dtype}: {name} not restored bit for bit");
    }

    /// <summary>A weight changed after loading no longer equals its checkpoint: it is copied aside, and unmerging
    /// restores the changed value, not the file's.</summary>
    [Fact]
    public void A_weight_changed_after_loading_is_copied_aside_and_restored_to_its_changed_value()
    {
        var c = MergedCases().First();
        using var unet = UNet2DConditionModel.FromPretrained(UnetDir);
        using var expected = SafetensorsFile.Open(Path.Combine(Dir, (string)c[1]));
        string changed = expected.Names[0];
        using (no_grad()) unet.state_dict()[changed].add_(0.5f);
        var before = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var patcher = new LoraPatcher(unet, null);
        patcher.Use([new LoraSpec(Path.Combine(Dir, (string)c[0]), (double)c[2])]);
        var (fromCheckpoint, inMemory, bytes) = patcher.Originals;
        Assert.Equal((expected.Names.Count - 1, 1), (fromCheckpoint, inMemory));
        Assert.Equal(before[changed].numel() * 4, bytes);
        patcher.Use([]);
        foreach (var (name, value) in before)
            Assert.True(BitEqual(value, unet.state_dict()[name]), $"{name} not restored bit for bit");
    }

    /// <summary>A checkpoint written to while a LoRA is merged cannot give the originals back: unmerging says so,
    /// naming the file, instead of restoring other values.</summary>
    [Fact]
    public void A_checkpoint_written_to_during_a_merge_makes_unmerging_an_error_naming_it()
    {
        var c = MergedCases().First();
        string dir = _dir;
        foreach (var f in Directory.EnumerateFiles(UnetDir)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        using var unet = UNet2DConditionModel.FromPretrained(dir);
        using var patcher = new LoraPatcher(unet, null);
        patcher.Use([new LoraSpec(Path.Combine(Dir, (string)c[0]), (double)c[2])]);
        Assert.True(patcher.Originals.FromCheckpoint > 0);
        string weights = Directory.EnumerateFiles(dir, "*.safetensors").Single();
        using (var stream = new FileStream(weights, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            stream.Seek(-1, SeekOrigin.End);
            int last = stream.ReadByte();
            stream.Seek(-1, SeekOrigin.End);
            stream.WriteByte((byte)(last ^ 1));
        }
        File.SetLastWriteTimeUtc(weights, DateTime.UtcNow.AddSeconds(5));
        var e = Assert.Throws<EllaException>(() => patcher.Use([]));
        Assert.Contains(weights, e.Message);
    }

    /// <summary>
    /// A model loaded through a layout conversion, as a single-file (LDM) checkpoint is: renamed tensors are read again
    /// from the file under their stored names; a transformed one (here an identity transform standing in for a
    /// reshape) has no stored counterpart and is copied aside. Both restore bit for bit.
    /// </summary>
    [Fact]
    public void Weights_loaded_through_a_key_mapping_are_read_again_by_their_stored_names()
    {
        var c = MergedCases().First();
        string dir = _dir;
        using var expected = SafetensorsFile.Open(Path.Combine(Dir, (string)c[1]));
        string transformed = expected.Names[0];
        string file = Path.Combine(dir, "renamed.safetensors");
        using (var original = Checkpoint.Open(UnetDir))
        {
            var tensors = original.Names.ToDictionary(n => "model.diffusion_model." + n, n => original.Read(n));
            SafetensorsWriter.Save(file, tensors);
            foreach (var t in tensors.Values) t.Dispose();
        }
        using var stored = SafetensorsFile.Open(file);
        var map = stored.Names.ToDictionary(n => n["model.diffusion_model.".Length..], n => n);
        var transforms = new Dictionary<string, (Func<Tensor, Tensor>, long[])>
        {
            [transformed] = (t => t.clone(), stored.GetInfo("model.diffusion_model." + transformed).Shape),
        };
        using var view = new KeyMappedTensorSource(stored, map, transforms);
        using var unet = UNet2DConditionModel.FromSource(Ella.Configs.UNet2DConditionConfig.Load(UnetDir), view);
        var before = unet.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        using var patcher = new LoraPatcher(unet, null);
        patcher.Use([new LoraSpec(Path.Combine(Dir, (string)c[0]), (double)c[2])]);
        Assert.Equal((expected.Names.Count - 1, 1), (patcher.Originals.FromCheckpoint, patcher.Originals.InMemory));
        foreach (var name in expected.Names)
        {
            using var e = expected.Read(name, ScalarType.Float32);
            Assert.True((unet.state_dict()[name] - e).abs().max().item<float>() <= 1e-6, $"{name} merged wrongly");
        }
        patcher.Use([]);
        foreach (var (name, value) in before)
            Assert.True(BitEqual(value, unet.state_dict()[name]), $"{name} not restored bit for bit");
    }
}
