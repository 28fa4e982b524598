using System.Diagnostics;
using Ella.Cli;
using Ella.Imaging;
using Ella.IO;
using Ella.Pipelines.Compatibility;
using Ella.Tests.Infrastructure;
using Ella.Text;

namespace Ella.Tests.Robustness;

/// <summary>Prompts of every odd kind, seeds at and beyond the edges, atomic and non-overwriting outputs, Ctrl-C, and the memory estimate.</summary>
public sealed class PromptSeedOutputTests : IDisposable
{
    readonly TinyModels _m = new();
    public void Dispose() => _m.Dispose();

    string Out(string name) => Path.Combine(_m.Root, "out", name);

    static string Parameters(string png) => PngText.Read(File.ReadAllBytes(png))["parameters"];

    public static IEnumerable<object[]> OddPrompts() =>
        new (string Name, string Text)[]
        {
            ("nul", "a red\0 cube"), ("control", "a \u001b[31mred\u0007 cube\u0001"), ("lone-high-surrogate", "a red \uD83D cube"),
            ("lone-low-surrogate", "\uDE00 a red cube"), ("rtl", "\u05E9\u05DC\u05D5\u05DD a cube \u0645\u0631\u062D\u0628\u0627"),
            ("bidi-override", "\u202Eebuc der a\u202C"), ("emoji", "a 🐱‍👤 on a 🟥 cube 🏳️‍🌈"), ("only-spaces", "   "),
            ("special-tokens", "<extra_id_0></s><pad> <|endoftext|>"), ("newlines", "a red\ncube\r\n\ton a table"),
        }.SelectMany(p => new[] { "ella", "clip", "ella+clip" }.Select(mode => new object[] { p.Name, p.Text, mode }));

    [Theory]
    [MemberData(nameof(OddPrompts))]
    public void Odd_prompts_generate_and_round_trip_cleaned_into_the_png(string name, string prompt, string mode)
    {
        string png = Out($"{name}-{mode.Replace('+', '_')}.png");
        var r = CliRunner.Run(_m.Generate("--mode", mode, "--prompt", prompt, "--negative-prompt", prompt, "-o", png));
        Assert.True(r.ExitCode == 0, $"{name}: {r.Error}");
        var text = Parameters(png);
        Assert.StartsWith(PromptText.Clean(prompt), text);
        Assert.DoesNotContain('\0', text);
        Assert.False(text.Any(char.IsSurrogate) && !HasOnlyPairs(text), "lone surrogate in the PNG text");
    }

    static bool HasOnlyPairs(string s)
    {
        for (int i = 0; i < s.Length; i++)
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
            else if (char.IsSurrogate(s[i])) return false;
        return true;
    }

    [Fact]
    public void Clean_replaces_control_characters_and_lone_surrogates_only()
    {
        Assert.Equal("a b", PromptText.Clean("a\0b"));
        Assert.Equal("a\nb\tc", PromptText.Clean("a\nb\tc"));
        Assert.Equal("x\uFFFDy\uFFFD", PromptText.Clean("x\uD800y\uDC00"));
        Assert.Equal("🙂 \u05E9 é", PromptText.Clean("🙂 \u05E9 é"));
        Assert.Equal("", PromptText.Clean(null));
    }

    [Fact]
    public void A_one_megabyte_prompt_is_cut_to_max_prompt_tokens_with_a_warning_and_quickly()
    {
        string huge = string.Concat(Enumerable.Repeat("a red cube on a blue table, ", (1 << 20) / 28 + 1))[..(1 << 20)];
        string file = Path.Combine(_m.Root, "huge.txt");
        File.WriteAllText(file, huge);
        var clock = Stopwatch.StartNew();
        var r = CliRunner.Run(_m.Generate("--prompt-file", file, "-o", Out("huge.png")));
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("truncated to 512 T5 tokens", r.Error);
        Assert.True(clock.Elapsed.TotalSeconds < 20, $"{clock.Elapsed.TotalSeconds:F1} s");
        var r2 = CliRunner.Run(_m.Generate("--prompt-file", file, "--max-prompt-tokens", "16", "--mode", "ella+clip", "-o", Out("huge16.png")));
        Assert.True(r2.ExitCode == 0, r2.Error);
        Assert.Contains("truncated to 16 T5 tokens", r2.Error);
        Assert.Contains("CLIP tokens", r2.Error);
        foreach (var bad in new[] { "1", "0", "-5", "100000" })
        {
            var b = CliRunner.Run(_m.Generate("--prompt", "x", "--max-prompt-tokens", bad));
            Assert.True(b.ExitCode == 2 && b.Error.Contains("--max-prompt-tokens"), b.Error);
        }
    }

    [Fact]
    public void Short_prompts_are_not_cut_and_their_tokens_equal_the_untruncated_encoding()
    {
        var tok = Ella.Text.T5Tokenizer.FromPretrained(_m.T5);
        const string text = "a red cube on a blue table";
        var free = tok.Encode(text);
        var capped = tok.Encode(text, TokenLength.Flexible, 512, capFlexible: true);
        Assert.Equal(free.Ids, capped.Ids);
        Assert.False(capped.Truncated);
        var cut = tok.Encode(text, TokenLength.Flexible, 4, capFlexible: true);
        Assert.Equal(free.Ids.Take(3).Append(1), cut.Ids);
        Assert.True(cut.Truncated);
    }

    [Fact]
    public void Seeds_minus_one_is_random_and_recorded_and_the_64_bit_range_is_enforced()
    {
        var r = CliRunner.Run(_m.Generate("--seed", "-1", "--prompt", "a cube", "-o", Out("random.png")));
        Assert.True(r.ExitCode == 0, r.Error);
        var seedLine = r.Error.Split('\n').First(l => l.StartsWith("seed "));
        string seed = seedLine.Split(' ', ';')[1];
        Assert.Contains($"Seed: {seed},", Parameters(Out("random.png")));
        // The recorded seed reproduces the image.
        var again = CliRunner.Run(_m.Generate("--seed", seed, "--prompt", "a cube", "-o", Out("again.png")));
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.Equal(RgbImage.Load(Out("random.png")).Pixels, RgbImage.Load(Out("again.png")).Pixels);

        var top = CliRunner.Run(_m.Generate("--seed", "9223372036854775807", "--prompt", "a cube", "-o", Out("top.png")));
        Assert.True(top.ExitCode == 0, top.Error);
        Assert.Contains("Seed: 9223372036854775807,", Parameters(Out("top.png")));
        var topAgain = CliRunner.Run(_m.Generate("--seed", "9223372036854775807", "--prompt", "a cube", "-o", Out("top2.png")));
        Assert.Equal(RgbImage.Load(Out("top.png")).Pixels, RgbImage.Load(Out("top2.png")).Pixels);

        foreach (var bad in new[] { "9223372036854775808", "18446744073709551616", "-2", "99999999999999999999999", "1.5", "abc", "" })
        {
            var b = CliRunner.Run(_m.Generate("--seed", bad, "--prompt", "a cube"));
            Assert.True(b.ExitCode == 2, $"--seed {bad}: exit {b.ExitCode} {b.Error}");
            Assert.Contains("--seed", b.Error);
            Assert.DoesNotContain("   at ", b.Error);
        }
    }

    [Fact]
    public void Atomic_writes_leave_the_old_file_or_nothing_and_no_temporary_file()
    {
        string dir = Path.Combine(_m.Root, "atomic");
        string target = Path.Combine(dir, "sub", "file.bin");
        Assert.Throws<IOException>(() => AtomicFile.Write(target, s => { s.Write(new byte[1000]); throw new IOException("disk full"); }));
        Assert.False(File.Exists(target));
        AtomicFile.WriteAllBytes(target, [1, 2, 3]);
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(target, s => { s.Write(new byte[5000]); throw new InvalidOperationException("crash"); }));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(target));
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(target)!));
        Assert.Throws<EllaException>(() => AtomicFile.WriteAllBytes(target, [9], overwrite: false));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(target));
    }

    [Fact]
    public void No_overwrite_refuses_before_loading_and_a_missing_folder_is_created()
    {
        string png = Out(Path.Combine("new", "deeper", "a.png"));
        var r = CliRunner.Run(_m.Generate("-o", png, "--prompt", "a cube"));
        Assert.True(r.ExitCode == 0, r.Error);
        var before = File.ReadAllBytes(png);
        var refused = CliRunner.Run(_m.Generate("-o", png, "--prompt", "another", "--no-overwrite"));
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--no-overwrite", refused.Error);
        Assert.DoesNotContain("loaded", refused.Error);
        Assert.Equal(before, File.ReadAllBytes(png));
        // With a batch, any existing target refuses the run.
        string stem = Out("batch.png");
        File.WriteAllBytes(Out("batch-1.png"), [0]);
        var batch = CliRunner.Run(_m.Generate("-o", stem, "--batch", "2", "--prompt", "x", "--no-overwrite"));
        Assert.Equal(2, batch.ExitCode);
        Assert.Contains("batch-1.png", batch.Error);
        Assert.False(File.Exists(Out("batch-0.png")));
        // A folder as output, or a path below a file.
        Assert.Equal(2, CliRunner.Run(_m.Generate("-o", _m.Root, "--prompt", "x")).ExitCode);
        Assert.Equal(2, CliRunner.Run(_m.Generate("-o", Path.Combine(png, "x.png"), "--prompt", "x")).ExitCode);
        Assert.Equal(2, CliRunner.Run("compare", "--sd", _m.Sd, "--t5", _m.T5, "--ella", _m.Ella64, "--prompt", "x", "-o", png, "--no-overwrite").ExitCode);
    }

    /// <summary>stderr that fires <paramref name="cancel"/> once it has seen <paramref name="trigger"/>.</summary>
    sealed class TriggerWriter(string trigger, CancellationTokenSource cancel) : StringWriter
    {
        public override void Write(string? value) { base.Write(value); Check(); }
        public override void WriteLine(string? value) { base.WriteLine(value); Check(); }
        void Check() { if (ToString().Contains(trigger)) cancel.Cancel(); }
    }

    static (int Code, string Error) RunUntil(string trigger, params string[] args)
    {
        using var cancel = new CancellationTokenSource();
        var err = new TriggerWriter(trigger, cancel);
        int code = EllaCli.Run(args, new StringWriter(), err, cancel.Token);
        return (code, err.ToString());
    }

    [Fact]
    public void Ctrl_C_during_generate_stops_between_steps_with_exit_130_and_writes_nothing()
    {
        string png = Out("cancelled.png");
        var (code, error) = RunUntil("step 2/", _m.Generate("--steps", "40", "-o", png, "--prompt", "a cube"));
        Assert.True(code == EllaCli.ExitInterrupted, error);
        Assert.Contains("interrupted", error);
        Assert.DoesNotContain("step 3/", error);
        Assert.False(File.Exists(png));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(png)!, "*.tmp"));
    }

    [Fact]
    public void Ctrl_C_during_dpg_generate_keeps_finished_grids_and_the_run_resumes()
    {
        string prompts = Path.Combine(_m.Root, "dpg-prompts");
        Directory.CreateDirectory(prompts);
        for (int i = 0; i < 3; i++) File.WriteAllText(Path.Combine(prompts, $"p{i}.txt"), $"prompt number {i}, a cube");
        string outDir = Path.Combine(_m.Root, "dpg-grids");
        string[] args = ["dpg", "generate", "--prompts", prompts, "--out", outDir, "--sd", _m.Sd, "--t5", _m.T5, "--ella", _m.Ella64,
            "--steps", "2", "--width", "16", "--height", "16", "--images-per-prompt", "2"];
        var (code, error) = RunUntil("[1/3]", args);
        Assert.True(code == EllaCli.ExitInterrupted, error);
        var kept = Directory.GetFiles(outDir, "*.png");
        Assert.Single(kept);
        Assert.Empty(Directory.GetFiles(outDir, "*.tmp"));
        var resumed = CliRunner.Run(args);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Contains("1 already done, 2 to generate", resumed.Error);
        Assert.Equal(3, Directory.GetFiles(outDir, "*.png").Length);
    }

    [Fact]
    public void A_request_beyond_the_available_memory_is_refused_before_it_starts()
    {
        var r = CliRunner.Run(_m.Generate("--width", "16384", "--height", "16384", "--batch", "64", "--prompt", "x", "-o", Out("huge.png")));
        Assert.True(r.ExitCode == 2, r.Error);
        Assert.Contains("needs about", r.Error);
        Assert.Contains("available", r.Error);
        Assert.DoesNotContain("step 1/", r.Error);
    }

    [Fact]
    public void The_estimate_of_SD15_at_4096_px_batch_8_exceeds_24_GB_and_suggests_tiling_only_where_it_fits()
    {
        var unet = Ella.Configs.UNet2DConditionConfig.StableDiffusion15();
        var vae = Ella.Configs.AutoencoderKLConfig.StableDiffusion15();
        var f32 = TorchSharp.torch.ScalarType.Float32;
        var big = MemoryEstimate.Of(unet, vae, f32, 8, 4096, 4096, cfg: true, tiled: false);
        double gb24 = 24.0 * (1L << 30);
        var refusal = big.Refusal(gb24, unet, vae, f32, 8, 4096, 4096, true, false);
        Assert.NotNull(refusal);
        Assert.Contains("4096×4096", refusal);
        Assert.DoesNotContain("--vae-tiling", refusal); // the UNet alone does not fit either
        // 512 px, one image: fits easily.
        Assert.Null(MemoryEstimate.Of(unet, vae, f32, 1, 512, 512, true, false).Refusal(gb24, unet, vae, f32, 1, 512, 512, true, false));
        // 2048 px, one image: the VAE decode is what does not fit in 4 GB; tiling would.
        var mid = MemoryEstimate.Of(unet, vae, f32, 1, 2048, 2048, true, false);
        var advice = mid.Refusal(4.0 * (1L << 30), unet, vae, f32, 1, 2048, 2048, true, false);
        Assert.NotNull(advice);
        Assert.Contains("--vae-tiling", advice);
        Assert.True(mid.VaeBytes > mid.UnetBytes);
    }
}
