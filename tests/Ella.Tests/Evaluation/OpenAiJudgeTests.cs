using System.Text.Json;
using Ella.Evaluation.Judges;
using Ella.Tests.Infrastructure;

namespace Ella.Tests.Evaluation;

/// <summary>The openai judge against a loopback OpenAI-protocol server: answers, normalisation, retry, resume.</summary>
public sealed class OpenAiJudgeTests : IDisposable
{
    readonly string _out = Directory.CreateTempSubdirectory("ella-judge-").FullName;
    public void Dispose() => Directory.Delete(_out, true);

    static string Fixture => Fixtures.PathOf("dpg", "four-images");

    /// <summary>A deterministic "model": the answer depends on the question and the crop's bytes; some replies are messy.</summary>
    static (int, string) Deterministic(JsonElement body)
    {
        var user = body.GetProperty("messages").EnumerateArray().Last();
        string text = user.GetProperty("content").EnumerateArray().First(p => p.GetProperty("type").GetString() == "text").GetProperty("text").GetString()!;
        string image = user.GetProperty("content").EnumerateArray().First(p => p.GetProperty("type").GetString() == "image_url").GetProperty("image_url").GetProperty("url").GetString()!;
        Assert.StartsWith("data:image/png;base64,", image);
        int h = (int)(System.IO.Hashing.Crc32.HashToUInt32(System.Text.Encoding.UTF8.GetBytes(text + image)) % 5);
        return (200, h switch { 0 => "Yes.", 1 => "yes, definitely", 2 => "No", 3 => "NO!", _ => "I cannot tell" });
    }

    [Theory]
    [InlineData("Yes.", "yes")]
    [InlineData("  YES, there is a cat", "yes")]
    [InlineData("no!", "no")]
    [InlineData("Maybe", OpenAiJudge.Unusable)]
    [InlineData("", OpenAiJudge.Unusable)]
    [InlineData("**Yes**", "yes")]
    public void Normalisation(string raw, string expected) => Assert.Equal(expected, OpenAiJudge.Normalize(raw));

    [Fact]
    public void Answers_are_recorded_retried_resumed_and_replayable()
    {
        string images = Path.Combine(Fixture, "images");
        int failuresLeft = 3;
        using var server = new FakeOpenAiServer((body, n) => Interlocked.Decrement(ref failuresLeft) >= 0 ? (500, "temporary failure") : Deterministic(body));
        string answers = Path.Combine(_out, "answers.jsonl");
        string[] Args(string judge, string mode) =>
        [
            "dpg", "score", "--images", images, "--csv", Path.Combine(Fixture, "dpg_bench.csv"), "--resolution", "64",
            "--scoring", mode, "--judge", judge, "--endpoint", server.Endpoint, "--model", "fake-vlm", "--parallel", "3",
            "--retries", "5", "--answers", answers, "--out", _out, "--json",
        ];
        var first = CliRunner.Run(Args("openai", "official"));
        Assert.True(first.ExitCode == 0, first.Error);
        Assert.Contains("retry", first.Error);
        int asked = server.Requests.Count;
        var lines = File.ReadAllLines(answers).Select(l => JsonSerializer.Deserialize<AnswerRecord>(l)!).ToList();
        Assert.Equal(asked - 3, lines.Count); // every successful request answered one question, written once
        Assert.All(lines, l => Assert.Equal(OpenAiJudge.Normalize(l.Raw), l.Answer));
        Assert.Contains(lines, l => l.Answer == OpenAiJudge.Unusable);

        // A second run resumes from the answers file and asks nothing; replaying the file gives the same numbers.
        var again = CliRunner.Run(Args("openai", "official"));
        Assert.True(again.ExitCode == 0, again.Error);
        Assert.Equal(asked, server.Requests.Count);
        var replay = CliRunner.Run(Args("replay", "official"));
        Assert.True(replay.ExitCode == 0, replay.Error);
        double Score(string json) => JsonDocument.Parse(json).RootElement.GetProperty("score").GetDouble();
        Assert.Equal(Score(first.Out), Score(again.Out), 1e-12);
        Assert.Equal(Score(first.Out), Score(replay.Out), 1e-12);
    }

    [Fact]
    public void A_server_that_keeps_failing_ends_with_a_clear_error_and_keeps_what_it_has()
    {
        using var server = new FakeOpenAiServer((_, n) => n < 5 ? (200, "yes") : (503, "overloaded"));
        string answers = Path.Combine(_out, "answers.jsonl");
        var r = CliRunner.Run("dpg", "score", "--images", Path.Combine(Fixture, "images"), "--csv", Path.Combine(Fixture, "dpg_bench.csv"),
            "--resolution", "64", "--judge", "openai", "--endpoint", server.Endpoint, "--model", "m", "--parallel", "1", "--retries", "1",
            "--answers", answers, "--out", _out);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("run again to resume", r.Error);
        Assert.Equal(5, File.ReadAllLines(answers).Length);
        Assert.True(server.Requests.Count <= 5 + 2 * 2, $"{server.Requests.Count} requests: the run should stop at the first question that fails for good");
    }
}
