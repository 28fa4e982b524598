using System.Text.Json.Nodes;
using Ella.Tests.Infrastructure;
using Ella.Tests.Tools;

namespace Ella.Tests.Robustness;

/// <summary>A ControlNet made for another base model is refused from its config, before anything runs.</summary>
public class ControlNetCompatibilityTests
{
    [Fact]
    public void A_controlnet_with_another_cross_attention_width_is_one_line_and_exit_code_2()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"ella-cn-mismatch-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            string source = Path.Combine(ToolsFixtureTests.Dir, "controlnet");
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!;
            int width = config["cross_attention_dim"]!.GetValue<int>();
            config["cross_attention_dim"] = width * 2;
            File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
            File.Copy(Path.Combine(source, "diffusion_pytorch_model.safetensors"), Path.Combine(dir, "diffusion_pytorch_model.safetensors"));
            string output = Path.Combine(dir, "never.png");
            var r = CliRunner.Run("generate", "--sd", ToolsFixtureTests.SdFolder("unet"), "--ella", ToolsFixtureTests.EllaFile,
                "--prompt-embeds", Path.Combine(ToolsFixtureTests.Dir, "controlnet_dpm_s0.8.safetensors"), "--steps", "2", "--dtype", "fp32",
                "--controlnet", dir, "--control-image", Path.Combine(ToolsFixtureTests.Dir, "controlnet_dpm_s0.8-control.png"), "-o", output);
            Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}: {r.Error}");
            Assert.Contains($"cross_attention_dim {width * 2}", r.Error);
            Assert.Contains(Path.Combine(dir, "config.json"), r.Error);
            Assert.DoesNotContain("   at ", r.Error);
            Assert.False(File.Exists(output));
        }
        finally { Directory.Delete(dir, true); }
    }
}
