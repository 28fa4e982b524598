using System.Text;
using Ella.Modules.T5;
using Ella.Modules.Vae;
using Ella.Tests.Infrastructure;
using Ella.Text;
using Ella.TextEncoders;
using Ella.Training.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Training.Data;

/// <summary>The tiny VAE of the pipeline fixture and the tiny T5 of the text fixture, loaded once.</summary>
public sealed class TinyEncoders : IDisposable
{
    public AutoencoderKL Vae { get; } = AutoencoderKL.FromPretrained(Fixtures.PathOf("diffusion", "pipeline", "model", "vae"));
    public T5TextFeatureEncoder Text { get; } = new(T5EncoderModel.FromPretrained(Fixtures.PathOf("text", "t5")),
        T5Tokenizer.FromPretrained(Fixtures.PathOf("text", "t5-tokenizer")), "tiny-t5");

    public void Dispose()
    {
        Vae.Dispose();
        Text.Dispose();
    }
}

/// <summary>Counts the prompts encoded (to prove a resumed run redoes nothing).</summary>
sealed class CountingEncoder(ITextFeatureEncoder inner) : ITextFeatureEncoder
{
    public int Calls;
    public string Name => inner.Name;
    public int HiddenSize => inner.HiddenSize;
    public EncodedText Encode(string prompt, TokenLength mode, int maxLength)
    {
        Calls++;
        return inner.Encode(prompt, mode, maxLength);
    }
    public void Dispose() { }
}

public sealed class FeatureCacheTests : IDisposable, IClassFixture<TinyEncoders>
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-cache-").FullName;
    readonly TinyEncoders _models;
    public FeatureCacheTests(TinyEncoders models) => _models = models;
    public void Dispose() => Directory.Delete(_dir, true);

    static readonly ImagePreprocessing Px16 = new(16);

    static readonly string[] Captions =
    [
        "a red square", "two dogs on a beach at dusk", "x", "a very small picture of a green hill with a tree",
    ];

    /// <summary>Four good samples of various sizes and one corrupt image (the fifth in order), sidecar layout.</summary>
    string MakeData(int good = 4)
    {
        string d = Path.Combine(_dir, "data");
        Directory.CreateDirectory(d);
        for (int i = 0; i < good; i++)
        {
            File.WriteAllBytes(Path.Combine(d, $"img{i}.png"), TestImages.Png(16 + 3 * i, 20 - i));
            File.WriteAllText(Path.Combine(d, $"img{i}.txt"), Captions[i]);
        }
        File.WriteAllBytes(Path.Combine(d, "img3b.png"), Encoding.ASCII.GetBytes("corrupt"));
        File.WriteAllText(Path.Combine(d, "img3b.txt"), "broken");
        File.WriteAllBytes(Path.Combine(d, "img9.png"), TestImages.Png(16, 16)); // no caption
        return d;
    }

    FeatureCacheSummary Write(string cache, string data, FeatureCacheWriteOptions? o = null, ITextFeatureEncoder? text = null,
        Action<FeatureCacheProgress>? progress = null, CancellationToken cancel = default)
    {
        using var ds = ImageCaptionDatasets.Open([data], Px16);
        return FeatureCacheWriter.Write(cache, ds, _models.Vae, text ?? _models.Text, o ?? new FeatureCacheWriteOptions { Preprocessing = Px16, SamplesPerFile = 2, BatchSize = 2 },
            progress, null, cancel);
    }

    static void AssertBf16Close(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        // bf16 keeps 8 significant bits: relative error at most 2^-8 after round-to-nearest
        using var tol = expected.abs() * (1.0 / 256) + 1e-6;
        using var err = (expected - actual).abs();
        Assert.True(err.le(tol).all().item<bool>(), $"max error {err.max().item<float>()}");
    }

    [Fact]
    public void Round_trip_matches_direct_encoding_within_bf16()
    {
        string data = MakeData();
        string cache = Path.Combine(_dir, "cache");
        var summary = Write(cache, data, new FeatureCacheWriteOptions { Preprocessing = Px16, SamplesPerFile = 3, BatchSize = 2 });
        Assert.Equal(6, summary.Total);
        Assert.Equal(4, summary.Cached);
        Assert.Equal(2, summary.Skipped);
        Assert.Equal(1, summary.SkipsByReason[SkipReasons.CorruptImage]);
        Assert.Equal(1, summary.SkipsByReason[SkipReasons.MissingCaption]);

        using var fc = FeatureCache.Open(cache);
        Assert.True(fc.IsComplete);
        Assert.Equal(4, fc.Count);
        Assert.Equal(64, fc.TextFeatureDim);
        Assert.Equal(0.18215, fc.ScalingFactor);
        Assert.Equal(16, fc.Settings.Resolution);
        Assert.Equal(1, fc.SkipCounts[SkipReasons.CorruptImage]);
        IFeatureCache contract = fc;

        using var ds = ImageCaptionDatasets.Open([data], Px16);
        using var g = new Generator(0);
        using (no_grad())
        {
            using var nullRef = _models.Text.Encode("", TokenLength.Flexible, 128);
            AssertBf16Close(nullRef.Features[0], contract.NullTextFeatures);
            int c = 0;
            for (int k = 0; k < ds.Count; k++)
            {
                using var s = ds.TryLoad(k, g);
                if (s == null) continue;
                using var cached = contract.Load(c++);
                Assert.Equal(s.Key, cached.Key);
                Assert.Equal(s.Caption, cached.Caption);
                Assert.Equal(ScalarType.Float32, cached.LatentMean.dtype);
                using var post = _models.Vae.Encode(s.Pixels.unsqueeze(0));
                using var std = post.Std();
                Assert.Equal([4L, 2, 2], cached.LatentMean.shape);
                AssertBf16Close(post.Mean[0], cached.LatentMean);
                AssertBf16Close(std[0], cached.LatentStd);
                using var text = _models.Text.Encode(s.Caption, TokenLength.Flexible, 128);
                AssertBf16Close(text.Features[0], cached.TextFeatures);
            }
            Assert.Equal(4, c);
        }
    }

    [Fact]
    public void Interrupted_caching_resumes_without_redoing_finished_files()
    {
        string data = MakeData();
        string straight = Path.Combine(_dir, "straight"), resumed = Path.Combine(_dir, "resumed");
        Write(straight, data);

        using var cts = new CancellationTokenSource();
        Assert.ThrowsAny<OperationCanceledException>(() => Write(resumed, data, progress: p => { if (p.Done >= 2) cts.Cancel(); }, cancel: cts.Token));
        Assert.False(FeatureCacheIndex.Read(Path.Combine(resumed, FeatureCacheIndex.FileName(0, 1))).Complete);
        var firstFile = Path.Combine(resumed, FeatureCacheWriter.FeatureFileName(0, 1, 0));
        var stamp = File.GetLastWriteTimeUtc(firstFile);
        Assert.True(File.Exists(firstFile));
        Assert.False(File.Exists(Path.Combine(resumed, FeatureCacheWriter.FeatureFileName(0, 1, 1))));

        var counting = new CountingEncoder(_models.Text);
        var summary = Write(resumed, data, text: counting);
        Assert.Equal(1, summary.FilesReused);
        Assert.Equal(2, summary.FilesWritten);
        Assert.Equal(2, summary.Reused);
        Assert.Equal(2, summary.Skipped);
        Assert.Equal(2, counting.Calls); // only the 2 good samples not yet cached
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(firstFile));

        var names = Directory.GetFiles(straight).Select(Path.GetFileName).Order().ToList();
        Assert.Equal(names, Directory.GetFiles(resumed).Select(Path.GetFileName).Order().ToList());
        foreach (var name in names)
            Assert.True(File.ReadAllBytes(Path.Combine(straight, name!)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(resumed, name!))), $"{name} differs");

        // a finished run is all reused
        var again = new CountingEncoder(_models.Text);
        var noop = Write(resumed, data, text: again);
        Assert.Equal(0, noop.FilesWritten);
        Assert.Equal(0, again.Calls);
    }

    [Fact]
    public void Two_shards_in_one_folder_read_as_one_cache()
    {
        string data = MakeData();
        string single = Path.Combine(_dir, "single"), sharded = Path.Combine(_dir, "sharded");
        Write(single, data, new FeatureCacheWriteOptions { Preprocessing = Px16, SamplesPerFile = 2 });
        Write(sharded, data, new FeatureCacheWriteOptions { Preprocessing = Px16, SamplesPerFile = 2, ShardIndex = 1, ShardCount = 2 });
        var warnings = new List<string>();
        using (var partial = FeatureCache.Open(sharded, warnings.Add))
        {
            Assert.False(partial.IsComplete);
            Assert.Contains(warnings, w => w.Contains("shards 0 of 2 missing"));
        }
        Write(sharded, data, new FeatureCacheWriteOptions { Preprocessing = Px16, SamplesPerFile = 2, ShardIndex = 0, ShardCount = 2 });

        using var a = FeatureCache.Open(single);
        using var b = FeatureCache.Open(sharded);
        Assert.True(b.IsComplete);
        Assert.Equal(2, b.IndexFiles.Count);
        Assert.Equal(a.Count, b.Count);
        Assert.Equal(a.SkipCounts, b.SkipCounts);
        Assert.True(a.NullTextFeatures.equal(b.NullTextFeatures).all().item<bool>());
        for (int i = 0; i < a.Count; i++)
        {
            using var x = a.Load(i);
            using var y = b.Load(i);
            Assert.Equal(x.Key, y.Key);
            Assert.True(x.LatentMean.eq(y.LatentMean).all().item<bool>());
            Assert.True(x.LatentStd.eq(y.LatentStd).all().item<bool>());
            Assert.True(x.TextFeatures.eq(y.TextFeatures).all().item<bool>());
        }

        // another shard count or other settings in the same folder are refused
        var e = Assert.Throws<EllaException>(() => Write(sharded, data, new FeatureCacheWriteOptions { Preprocessing = Px16, SamplesPerFile = 2, ShardIndex = 0, ShardCount = 3 }));
        Assert.Contains("2 shards", e.Message);
        e = Assert.Throws<EllaException>(() => Write(single, data, new FeatureCacheWriteOptions { Preprocessing = new ImagePreprocessing(24), SamplesPerFile = 2 }));
        Assert.Contains("resolution", e.Message);
    }

    [Fact]
    public void Changed_data_is_not_mixed_into_an_existing_cache()
    {
        string data = MakeData();
        string cache = Path.Combine(_dir, "cache");
        Write(cache, data);
        File.WriteAllBytes(Path.Combine(data, "img0a.png"), TestImages.Png(32, 32));
        File.WriteAllText(Path.Combine(data, "img0a.txt"), "inserted");
        var e = Assert.Throws<EllaException>(() => Write(cache, data));
        Assert.Contains("different data", e.Message);
    }

    [Fact]
    public void Open_fails_clearly_on_a_folder_that_is_not_a_cache()
    {
        var e = Assert.Throws<EllaException>(() => FeatureCache.Open(_dir));
        Assert.Contains(_dir, e.Message);
        e = Assert.Throws<EllaException>(() => FeatureCache.Open(Path.Combine(_dir, "missing")));
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void Caching_leaks_no_tensors()
    {
        string data = MakeData(good: 2);
        Write(Path.Combine(_dir, "warm"), data, new FeatureCacheWriteOptions { Preprocessing = Px16, SamplesPerFile = 2, BatchSize = 2 });
        DisposeScopeManager.Statistics.Reset();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        Write(Path.Combine(_dir, "measured"), data, new FeatureCacheWriteOptions { Preprocessing = Px16, SamplesPerFile = 2, BatchSize = 2 });
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        using var fc = FeatureCache.Open(Path.Combine(_dir, "measured"));
        long opened = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < fc.Count; i++) fc.Load(i).Dispose();
        Assert.Equal(opened, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
