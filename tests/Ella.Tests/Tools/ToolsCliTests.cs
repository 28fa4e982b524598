using System.Globalization;
using System.Text.Json;
using Ella.Imaging;
using Ella.Tests.Infrastructure;

namespace Ella.Tests.Tools;

/// <summary><c>ella generate</c> with the tools' flags reproduces the fixture's PNGs (one case per kind, from cases.json),
/// and bad tool input is one line with exit code 2.</summary>
public class ToolsCliTests
{
    static string Dir => ToolsFixtureTests.Dir;

    /// <summary>The first case of each kind.</summary>
    public static IEnumerable<object[]> OnePerKind()
    {
        using var doc = Fixtures.Json("tools", "cases.json");
        return doc.RootElement.GetProperty("cases").EnumerateArray().GroupBy(c => c.GetProperty("kind").GetString())
            .Select(g => new object[] { g.First().GetProperty("name").GetString()! }).ToList();
    }

    static string F(double v) => v.ToString(CultureInfo.InvariantCulture);

    [Theory]
    [MemberData(nameof(OnePerKind))]
    public void Generate_with_tool_flags_writes_the_fixture_images(string name)
    {
        using var doc = Fixtures.Json("tools", "cases.json");
        var c = doc.RootElement.GetProperty("cases").EnumerateArray().First(e => e.GetProperty("name").GetString() == name);
        var inputs = c.GetProperty("inputs");
        string In(string key) => Path.Combine(Dir, inputs.GetProperty(key).GetString()!);
        string unet = c.TryGetProperty("unet", out var u) ? u.GetString()! : "unet";
        string output = Path.Combine(Path.GetTempPath(), $"ella-tools-cli-{Guid.NewGuid():N}", "out.png");
        var args = new List<string>
        {
            "generate", "--sd", ToolsFixtureTests.SdFolder(unet), "--ella", ToolsFixtureTests.EllaFile,
            "--prompt-embeds", Path.Combine(Dir, c.GetProperty("file").GetString()!), "--token-length", "fixed",
            "--scheduler", c.GetProperty("scheduler").GetString()!, "--steps", c.GetProperty("steps").GetInt32().ToString(),
            "--guidance", F(c.GetProperty("guidance").GetDouble()), "--seed", c.GetProperty("seed").GetInt64().ToString(), "-o", output,
            "--dtype", "fp32", // the exact path: the oracle is float32 (auto picks bf16 on CPUs with native bf16)
        };
        if (inputs.TryGetProperty("image", out _)) args.AddRange(["--init-image", In("image")]);
        if (c.TryGetProperty("strength", out var s)) args.AddRange(["--strength", F(s.GetDouble())]);
        if (inputs.TryGetProperty("mask", out _)) args.AddRange(["--mask", In("mask")]);
        if (inputs.TryGetProperty("control_image", out _))
            args.AddRange(["--controlnet", Path.Combine(Dir, "controlnet"), "--control-image", In("control_image"), "--control-scale", F(c.GetProperty("conditioning_scale").GetDouble())]);
        if (c.TryGetProperty("lora", out var l)) args.AddRange(["--lora", $"{Path.Combine(Dir, l.GetString()!)}:{F(c.GetProperty("multiplier").GetDouble())}"]);
        if (!inputs.TryGetProperty("image", out _)) args.AddRange(["--width", "64", "--height", "64"]);
        try
        {
            var r = CliRunner.Run(args.ToArray());
            Assert.True(r.ExitCode == 0, r.Error);
            var expected = c.GetProperty("expected_pngs").EnumerateArray().Select(e => e.GetString()!).ToList();
            for (int i = 0; i < expected.Count; i++)
            {
                string path = expected.Count == 1 ? output : Path.Combine(Path.GetDirectoryName(output)!, $"out-{i}.png");
                var ours = RgbImage.Load(path);
                var theirs = RgbImage.Load(Path.Combine(Dir, expected[i]));
                int worst = ours.Pixels.Zip(theirs.Pixels, (a, b) => Math.Abs(a - b)).Max();
                Assert.True(worst <= 1, $"{name} image {i}: a pixel differs by {worst} levels");
            }
        }
        finally { Directory.Delete(Path.GetDirectoryName(output)!, true); }
    }

    [Fact]
    public void Bad_tool_input_is_one_line_and_exit_code_2()
    {
        string sd = ToolsFixtureTests.SdFolder("unet"), ella = ToolsFixtureTests.EllaFile;
        string embeds = Path.Combine(Dir, "img2img_dpm_s0.6.safetensors");
        string init = Path.Combine(Dir, "inpaint4_dpm_s1.0-init.png");
        string small = Path.Combine(Path.GetTempPath(), $"ella-small-mask-{Guid.NewGuid():N}.png");
        new RgbImage(32, 32).SavePng(small);
        try
        {
            string[] common = ["generate", "--sd", sd, "--ella", ella, "--prompt-embeds", embeds, "--steps", "2", "-o", Path.Combine(Path.GetTempPath(), "never.png")];
            foreach (var (extra, expect) in new (string[], string)[]
            {
                (["--init-image", init, "--mask", small], "same size"),
                (["--mask", small], "--mask needs --init-image"),
                (["--init-image", init, "--strength", "1.5"], "strength"),
                (["--init-image", init, "--strength", "0.1"], "no denoising step"),
                (["--controlnet", Path.Combine(Dir, "controlnet")], "--control-image"),
                (["--controlnet", Path.Combine(Dir, "controlnet"), "--controlnet", Path.Combine(Dir, "controlnet"), "--control-image", init], "2 --controlnet but 1 --control-image"),
                (["--controlnet", Path.Combine(Dir, "controlnet"), "--control-image", init, "--control-start", "0.8", "--control-end", "0.2"], "--control-start"),
                (["--controlnet", Path.Combine(Dir, "controlnet"), "--control-image", init, "--control-preprocess", "depth"], "depth"),
                (["--lora", "/nonexistent/x.safetensors:0.5"], "/nonexistent/x.safetensors"),
                (["--init-image", "/nonexistent/init.png"], "/nonexistent/init.png"),
            })
            {
                var r = CliRunner.Run([.. common, .. extra]);
                Assert.True(r.ExitCode == 2, $"{string.Join(" ", extra)}: exit {r.ExitCode}: {r.Error}");
                Assert.Contains(expect, r.Error);
                Assert.DoesNotContain("   at ", r.Error);
            }
        }
        finally { File.Delete(small); }
    }
}
