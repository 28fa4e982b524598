using System.Text.Json;
using Ella.Tests.Infrastructure;

namespace Ella.Tests.Cli;

public class TokenizeCommandTests
{
    [Fact]
    public void T5_fixed_length_pads_to_max_length()
    {
        var r = CliRunner.Run("tokenize", "--t5", Fixtures.PathOf("text", "t5-tokenizer"), "--token-length", "fixed", "--json", "a photo of a cat");
        Assert.Equal(0, r.ExitCode);
        using var doc = JsonDocument.Parse(r.Out);
        var ids = doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(128, ids.Length);
        Assert.Equal([4, 1347, 9, 4, 403, 1], ids[..6]); // from the tricky-strings fixture ("a  photo   of a    cat")
        Assert.All(ids[6..], id => Assert.Equal(0, id));
    }

    [Fact]
    public void Clip_shows_tokens_with_start_and_end()
    {
        var r = CliRunner.Run("tokenize", "--clip", Path.Combine(Fixtures.SharedData, "clip"), "The quick brown fox");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("49406  <|startoftext|>", r.Out);
        Assert.Contains("quick</w>", r.Out);
    }

    [Fact]
    public void Needs_exactly_one_tokenizer()
    {
        var r = CliRunner.Run("tokenize", "text");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--t5", r.Error);
        r = CliRunner.Run("tokenize", "--t5", "/nonexistent", "text");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("/nonexistent", r.Error);
    }
}
