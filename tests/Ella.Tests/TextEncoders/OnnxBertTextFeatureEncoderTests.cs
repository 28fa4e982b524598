using Ella.Tests.Infrastructure;
using Ella.Text;
using Ella.TextEncoders;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.TextEncoders;

public sealed class OnnxBertTextFeatureEncoderTests
{
    static OnnxBertTextFeatureEncoderTests() => Fixtures.InitTorch();

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>Training and inference build their own encoders, maybe with other thread counts: a prompt's features
    /// must be the same bits in both.</summary>
    [Fact]
    public void Features_are_identical_across_encoder_instances_and_thread_counts()
    {
        using var one = OnnxBertTextFeatureEncoder.FromEmbedded(EmbeddedBertModel.MiniLM, threads: 1);
        using var two = OnnxBertTextFeatureEncoder.FromEmbedded(EmbeddedBertModel.MiniLM, threads: 2);
        foreach (var prompt in SentenceEmbeddingProofTests.Sentences.Take(6))
            foreach (var mode in new[] { TokenLength.Flexible, TokenLength.Fixed })
            {
                using var a = one.Encode(prompt, mode, 64);
                using var b = two.Encode(prompt, mode, 64);
                Assert.True(Same(a.Features, b.Features), $"\"{prompt}\" ({mode}): features differ");
            }
    }

    [Fact]
    public void Fixed_length_features_have_max_length_rows_and_the_real_tokens_match_flexible()
    {
        using var encoder = OnnxBertTextFeatureEncoder.FromEmbedded(EmbeddedBertModel.MiniLM);
        Assert.Equal(384, encoder.HiddenSize);
        using var flex = encoder.Encode("a small blue square", TokenLength.Flexible, 128);
        using var fix = encoder.Encode("a small blue square", TokenLength.Fixed, 128);
        Assert.Equal([1L, 6L, 384L], flex.Features.shape);
        Assert.Equal([1L, 128L, 384L], fix.Features.shape);
        Assert.False(fix.Truncated);
        // Padding is masked out of attention, so the real tokens see the same context.
        TensorAssert.Close(flex.Features, fix.Features[.., ..6], "real tokens, padded vs not", 1e-4);
    }

    [Fact]
    public void Bf16_features_on_request()
    {
        using var encoder = TextEncoderFactory.Create(TextEncoderKind.ArcticXs, null, ScalarType.BFloat16, CPU);
        using var e = encoder.Encode("a red circle", TokenLength.Flexible, 128);
        Assert.Equal(ScalarType.BFloat16, e.Features.dtype);
        Assert.Equal(384, encoder.HiddenSize);
    }

    [Fact]
    public void Encoding_does_not_leak_tensors()
    {
        using var encoder = OnnxBertTextFeatureEncoder.FromEmbedded(EmbeddedBertModel.MiniLM);
        encoder.Encode("warm up", TokenLength.Flexible, 128).Dispose();
        DisposeScopeManager.Statistics.Reset();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 5; i++)
        {
            using var scope = NewDisposeScope();
            encoder.Encode($"prompt number {i}", TokenLength.Fixed, 32).Dispose();
        }
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [Fact]
    public void The_factory_needs_a_folder_for_t5_only_and_names_the_kinds()
    {
        Assert.Throws<EllaException>(() => TextEncoderFactory.Create(TextEncoderKind.T5, null));
        Assert.Equal(384, TextEncoderFactory.HiddenSize(TextEncoderKind.MiniLM, null));
        foreach (var name in TextEncoderKinds.Names) Assert.Equal(name, TextEncoderKinds.Name(TextEncoderKinds.Parse(name)));
        Assert.Contains("t5, minilm, arctic-xs", Assert.Throws<EllaException>(() => TextEncoderKinds.Parse("bert")).Message);
    }

    [Fact]
    public void A_folder_with_model_onnx_and_vocab_txt_loads_like_the_package()
    {
        string dir = Directory.CreateTempSubdirectory("ella-onnx-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "model.onnx"), EmbeddedBertModel.MiniLM.ReadModel());
            using (var v = EmbeddedBertModel.MiniLM.OpenVocabulary()) using (var f = File.Create(Path.Combine(dir, "vocab.txt"))) v.CopyTo(f);
            using var fromFolder = TextEncoderFactory.Create(TextEncoderKind.MiniLM, dir);
            using var packaged = TextEncoderFactory.Create(TextEncoderKind.MiniLM, null);
            using var a = fromFolder.Encode("a purple triangle", TokenLength.Flexible, 128);
            using var b = packaged.Encode("a purple triangle", TokenLength.Flexible, 128);
            Assert.True(Same(a.Features, b.Features));
            File.WriteAllText(Path.Combine(dir, "model.onnx"), "not onnx");
            var e = Assert.Throws<EllaException>(() => TextEncoderFactory.Create(TextEncoderKind.MiniLM, dir));
            Assert.Contains("model.onnx", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }
}
