using Ella.Hardware;
using Ella.Imaging;
using Ella.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Ella.Tests.Hardware;

public sealed class DTypeCliTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-dtype-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void Generate_defaults_to_auto_and_records_the_dtype_it_resolved_to()
    {
        string model = Fixtures.PathOf("diffusion", "pipeline", "model");
        string output = Path.Combine(_dir, "auto.png");
        var r = CliRunner.Run("generate", "--sd", model, "--ella", Path.Combine(model, "ella.safetensors"),
            "--prompt-embeds", Fixtures.PathOf("diffusion", "pipeline", "run_flex_g7.5.safetensors"),
            "--steps", "1", "--width", "64", "--height", "64", "--seed", "1", "-o", output);
        Assert.True(r.ExitCode == 0, r.Error);
        var expected = DTypeChoice.Auto(CPU);
        Assert.Contains($"Dtype: {DTypeChoice.Name(expected)}", PngText.Read(File.ReadAllBytes(output))["parameters"]);
        // A warning only for an explicit bf16 without native bf16, never for auto.
        Assert.DoesNotContain("no native bf16", r.Error);
    }

    [Fact]
    public void An_unknown_dtype_is_refused_with_the_flag_named()
    {
        var r = CliRunner.Run("generate", "--sd", "x", "--prompt", "p", "--dtype", "int8");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("int8", r.Error);
    }
}
