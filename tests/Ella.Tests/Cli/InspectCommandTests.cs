using System.Text.Json;
using Ella.Tests.Infrastructure;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Tests.Cli;

public sealed class InspectCommandTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-inspect-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void Json_lists_every_tensor_of_a_file()
    {
        string path = Fixtures.PathOf("diffusion", "ella", "ella.safetensors");
        var r = CliRunner.Run("inspect", path, "--json");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Out);
        Assert.Equal("safetensors", doc.RootElement.GetProperty("format").GetString());
        using var cases = Fixtures.Json("diffusion", "ella", "cases.json");
        Assert.Equal(cases.RootElement.GetProperty("num_parameters").GetInt64(), doc.RootElement.GetProperty("parameters").GetInt64());
        var expected = cases.RootElement.GetProperty("state_dict").EnumerateArray().ToDictionary(
            e => e.GetProperty("key").GetString()!, e => e.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray());
        var tensors = doc.RootElement.GetProperty("tensors").EnumerateArray().ToList();
        Assert.Equal(expected.Count, tensors.Count);
        foreach (var t in tensors)
        {
            Assert.Equal("F32", t.GetProperty("dtype").GetString());
            Assert.Equal(expected[t.GetProperty("name").GetString()!], t.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray());
        }
    }

    [Fact]
    public void Detects_folders_and_single_file_checkpoints()
    {
        var r = CliRunner.Run("inspect", Fixtures.PathOf("diffusion", "pipeline", "model"), "--json");
        Assert.Equal(0, r.ExitCode);
        using (var doc = JsonDocument.Parse(r.Out))
        {
            Assert.Equal("diffusers_folder", doc.RootElement.GetProperty("format").GetString());
            Assert.Contains(doc.RootElement.GetProperty("tensors").EnumerateArray(), t => t.GetProperty("name").GetString()!.StartsWith("unet/"));
        }
        r = CliRunner.Run("inspect", Fixtures.PathOf("diffusion", "unet", "model"));
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("Hugging Face model folder", r.Out);

        string ldm = Path.Combine(_dir, "tiny-sd.safetensors");
        Ella.Weights.SafetensorsWriter.Save(ldm, new Dictionary<string, Tensor>
        {
            ["model.diffusion_model.input_blocks.0.0.weight"] = zeros(4, 4, 3, 3),
            ["first_stage_model.decoder.conv_in.weight"] = zeros(2, 2, 1, 1).to_type(ScalarType.Float16),
        });
        r = CliRunner.Run("inspect", ldm, "--json");
        using (var doc = JsonDocument.Parse(r.Out))
        {
            Assert.Equal("single_file_sd", doc.RootElement.GetProperty("format").GetString());
            Assert.Equal(148, doc.RootElement.GetProperty("parameters").GetInt64());
        }
    }

    [Fact]
    public void Bad_input_gets_one_clear_line_and_exit_code_2()
    {
        string empty = Path.Combine(_dir, "empty.safetensors");
        File.WriteAllBytes(empty, []);
        foreach (var args in new[] { new[] { "inspect", empty }, ["inspect", Path.Combine(_dir, "missing")], ["inspect"], ["inspect", empty, "--bogus"] })
        {
            var r = CliRunner.Run(args);
            Assert.Equal(2, r.ExitCode);
            Assert.StartsWith("error: ", r.Error);
            Assert.DoesNotContain("   at ", r.Error); // no stack trace
        }
        Assert.Contains(empty, CliRunner.Run("inspect", empty).Error);
        string pickle = Path.Combine(_dir, "model.ckpt");
        File.WriteAllBytes(pickle, [0x80, 2]);
        Assert.Contains("pickle", CliRunner.Run("inspect", pickle).Error);
    }
}
