using Ella.Modules.Clip;
using Ella.Tests.Infrastructure;
using Ella.Text;
using Ella.Text.PromptWeights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Tools;

/// <summary>Automatic1111's prompt weights, from the worked examples of its documentation (prompt_parser.py's
/// docstring and the wiki's "Attention/emphasis" section) and its chunking rules.</summary>
public class PromptWeightTests
{
    static readonly Lazy<ClipTokenizer> Tokenizer = new(() => ClipTokenizer.FromPretrained(Path.Combine(Fixtures.SharedData, "clip")));

    public static IEnumerable<object[]> Examples() =>
    [
        ["normal text", new (string, double)[] { ("normal text", 1.0) }],
        ["an (important) word", new[] { ("an ", 1.0), ("important", 1.1), (" word", 1.0) }],
        ["(unbalanced", new[] { ("unbalanced", 1.1) }],
        [@"\(literal\]", new[] { ("(literal]", 1.0) }],
        ["(unnecessary)(parens)", new[] { ("unnecessaryparens", 1.1) }],
        ["a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", new[]
        {
            ("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.4641), (".", 1.1),
        }],
        ["((word))", new[] { ("word", 1.21) }],
        ["[word]", new[] { ("word", 1 / 1.1) }],
        ["[[word]]", new[] { ("word", 1 / 1.21) }],
        ["(word:1.3)", new[] { ("word", 1.3) }],
        ["a BREAK b", new[] { ("a", 1.0), ("BREAK", -1.0), ("b", 1.0) }],
        ["", new[] { ("", 1.0) }],
    ];

    [Theory]
    [MemberData(nameof(Examples))]
    public void Parses_like_automatic1111(string prompt, (string Text, double Weight)[] expected)
    {
        var parsed = PromptAttention.Parse(prompt);
        Assert.Equal(expected.Select(e => e.Text), parsed.Select(p => p.Text));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i].Weight - parsed[i].Weight) < 1e-12, $"'{parsed[i].Text}': {parsed[i].Weight} vs {expected[i].Weight}");
    }

    [Fact]
    public void T5_text_loses_the_syntax_only()
    {
        Assert.Equal("a red car, blue (sky)", PromptAttention.Strip(@"a (red:1.3) car, [blue] \(sky\)"));
        Assert.Equal("a plain prompt: with a colon", PromptAttention.Strip("a plain prompt: with a colon"));
    }

    [Fact]
    public void Long_prompts_are_split_into_chunks_of_75()
    {
        var tok = Tokenizer.Value;
        Assert.Equal(75, ClipPromptChunks.ChunkLength(tok));
        var chunks = ClipPromptChunks.Tokenize(tok, string.Join(" ", Enumerable.Repeat("cat", 80)));
        Assert.Equal(2, chunks.Count);
        int cat = tok.EncodeIds("cat")[1];
        foreach (var c in chunks)
        {
            Assert.Equal(77, c.Ids.Length);
            Assert.Equal(tok.BosId, c.Ids[0]);
            Assert.Equal(tok.EosId, c.Ids[^1]);
        }
        Assert.Equal(75, chunks[0].Ids.Count(i => i == cat));
        Assert.Equal(5, chunks[1].Ids.Count(i => i == cat));
        Assert.Equal(tok.EosId, chunks[1].Ids[6]);
    }

    [Fact]
    public void A_tokenizer_with_a_shorter_context_gets_chunks_of_its_own_length()
    {
        string dir = Path.Combine(Path.GetTempPath(), "ella-clip24-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string clip = Path.Combine(Fixtures.SharedData, "clip");
            foreach (var f in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(clip, f), Path.Combine(dir, f));
            File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"model_max_length": 24, "pad_token": "<|endoftext|>"}""");
            var tok = ClipTokenizer.FromPretrained(dir);
            Assert.Equal(22, ClipPromptChunks.ChunkLength(tok));
            var chunks = ClipPromptChunks.Tokenize(tok, string.Join(" ", Enumerable.Repeat("cat", 30)));
            Assert.Equal(2, chunks.Count);
            int cat = tok.EncodeIds("cat")[1];
            Assert.All(chunks, c => Assert.Equal(24, c.Ids.Length));
            Assert.Equal(22, chunks[0].Ids.Count(i => i == cat));
            Assert.Equal(8, chunks[1].Ids.Count(i => i == cat));
            Assert.Equal(tok.EosId, chunks[1].Ids[9]);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_full_chunk_breaks_after_a_recent_comma()
    {
        var tok = Tokenizer.Value;
        // 70 words, a comma, 10 words: at 75 tokens the last comma is 5 tokens back (≤ 20), so the chunk ends after it.
        string prompt = string.Join(" ", Enumerable.Repeat("cat", 70)) + ", " + string.Join(" ", Enumerable.Repeat("dog", 10));
        var chunks = ClipPromptChunks.Tokenize(tok, prompt);
        int comma = tok.EncodeIds(",")[1], dog = tok.EncodeIds("dog")[1];
        Assert.Equal(2, chunks.Count);
        Assert.Equal(comma, chunks[0].Ids[71]);
        Assert.Equal(tok.EosId, chunks[0].Ids[72]);
        Assert.Equal(10, chunks[1].Ids.Count(i => i == dog));
        Assert.Equal(0, chunks[0].Ids.Count(i => i == dog));
    }

    [Fact]
    public void Break_starts_a_new_chunk_and_weights_follow_their_tokens()
    {
        var tok = Tokenizer.Value;
        var chunks = ClipPromptChunks.Tokenize(tok, "a (cat:1.5) BREAK dog");
        Assert.Equal(2, chunks.Count);
        int cat = tok.EncodeIds("cat")[1];
        int at = Array.IndexOf(chunks[0].Ids, cat);
        Assert.Equal(1.5f, chunks[0].Weights[at]);
        Assert.Equal(1f, chunks[0].Weights[at - 1]);
        Assert.True(chunks[1].Unweighted);
    }

    [Fact]
    public void Encoding_keeps_plain_prompts_exact_and_rescales_weighted_ones_to_the_original_mean()
    {
        var tok = Tokenizer.Value;
        using var clip = ClipTextModel.FromPretrained(Fixtures.PathOf("text", "clip-text"));
        using var _ = inference_mode();
        using var plain = clip.forward(tensor(tok.Encode("a photo of a cat").Ids.Select(i => (long)i).ToArray()).reshape(1, -1));
        using var same = WeightedClipEncoder.Encode(clip, tok, "a photo of a cat", 1, CPU);
        Assert.True(plain.eq(same).all().item<bool>(), "an unweighted prompt must give SD's plain encoding");

        using var weighted = WeightedClipEncoder.Encode(clip, tok, "a photo of a (cat:1.5)", 1, CPU);
        Assert.Equal(plain.shape, weighted.shape);
        Assert.True(Math.Abs(plain.mean().item<float>() - weighted.mean().item<float>()) < 1e-6, "the weighted condition keeps the original mean");
        int at = Array.IndexOf(tok.Encode("a photo of a cat").Ids, tok.EncodeIds("cat")[1]);
        float ratio = plain.mean().item<float>() / (plain * ClipWeights(tok, "a photo of a (cat:1.5)")).mean().item<float>();
        TensorAssert.Close(plain[0, at] * 1.5f * ratio, weighted[0, at], "weighted token");
        TensorAssert.Close(plain[0, 1] * ratio, weighted[0, 1], "unweighted token (rescaled only)");

        using var two = WeightedClipEncoder.Encode(clip, tok, "a cat", 2, CPU);
        Assert.Equal([1L, 154, 64], two.shape);
    }

    static Tensor ClipWeights(ClipTokenizer tok, string prompt) => tensor(ClipPromptChunks.Tokenize(tok, prompt)[0].Weights).reshape(1, -1, 1);
}
