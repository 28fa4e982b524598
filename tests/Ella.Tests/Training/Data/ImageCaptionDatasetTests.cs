using System.Text;
using Ella.Training.Data;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Training.Data;

public sealed class ImageCaptionDatasetTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-data-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    static readonly ImagePreprocessing Px8 = new(8);

    string Folder(string name)
    {
        string d = Path.Combine(_dir, name);
        Directory.CreateDirectory(d);
        return d;
    }

    static Generator Rng(ulong seed = 0) => new Generator(seed);

    static List<ImageCaptionSample?> LoadAll(IImageCaptionDataset ds)
    {
        using var g = Rng();
        return Enumerable.Range(0, ds.Count).Select(i => ds.TryLoad(i, g)).ToList();
    }

    [Fact]
    public void Sidecar_folder_reads_png_jpeg_and_webp_in_sorted_order()
    {
        string d = Folder("kohya");
        File.WriteAllBytes(Path.Combine(d, "b.jpg"), TestImages.Encode(12, 10, SKEncodedImageFormat.Jpeg));
        File.WriteAllText(Path.Combine(d, "b.txt"), "a jpeg\n");
        File.WriteAllBytes(Path.Combine(d, "a.png"), TestImages.Png(8, 8));
        File.WriteAllText(Path.Combine(d, "a.txt"), "a png");
        Directory.CreateDirectory(Path.Combine(d, "sub"));
        File.WriteAllBytes(Path.Combine(d, "sub", "c.webp"), TestImages.Encode(10, 16, SKEncodedImageFormat.Webp));
        File.WriteAllText(Path.Combine(d, "sub", "c.txt"), "a webp");
        File.WriteAllText(Path.Combine(d, "notes.md"), "ignored");

        using var ds = ImageCaptionDatasets.Open([d], Px8);
        Assert.IsType<SidecarCaptionDataset>(ds);
        Assert.Equal(3, ds.Count);
        var samples = LoadAll(ds);
        Assert.Equal(["a.png", "b.jpg", "sub/c.webp"], samples.Select(s => s!.Key));
        Assert.Equal(["a png", "a jpeg", "a webp"], samples.Select(s => s!.Caption));
        foreach (var s in samples)
        {
            Assert.Equal([3L, 8, 8], s!.Pixels.shape);
            Assert.Equal(ScalarType.Float32, s.Pixels.dtype);
            Assert.True(s.Pixels.min().item<float>() >= -1f && s.Pixels.max().item<float>() <= 1f);
            s.Dispose();
        }
        Assert.Equal(0, ds.Skips.Total);
    }

    [Fact]
    public void Png_pixels_are_exact_when_no_resize_is_needed()
    {
        string d = Folder("exact");
        File.WriteAllBytes(Path.Combine(d, "x.png"), TestImages.Png(8, 8));
        File.WriteAllText(Path.Combine(d, "x.txt"), "x");
        using var ds = ImageCaptionDatasets.Open([d], Px8);
        using var g = Rng();
        using var s = ds.TryLoad(0, g)!;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 8; y += 3)
                for (int x = 0; x < 8; x += 3)
                    Assert.Equal(TestImages.Value(c, x, y) * 2 - 1, s.Pixels[c, y, x].item<float>(), 5);
    }

    [Fact]
    public void Metadata_jsonl_layout_reads_file_name_and_text()
    {
        string d = Folder("hf");
        Directory.CreateDirectory(Path.Combine(d, "imgs"));
        File.WriteAllBytes(Path.Combine(d, "imgs", "1.png"), TestImages.Png(8, 8));
        File.WriteAllBytes(Path.Combine(d, "0.png"), TestImages.Png(8, 12));
        File.WriteAllBytes(Path.Combine(d, "unlisted.png"), TestImages.Png(8, 8));
        File.WriteAllText(Path.Combine(d, "metadata.jsonl"), string.Join("\n",
            """{"file_name": "imgs/1.png", "text": "second", "extra": 3}""",
            """{"file_name": "0.png", "text": "first"}""",
            """{"file_name": "gone.png", "text": "no file"}""",
            """not json""",
            ""));
        var warnings = new List<string>();
        using var ds = ImageCaptionDatasets.Open([d], Px8, warnings.Add);
        Assert.IsType<ImageFolderDataset>(ds);
        Assert.Equal(["0.png", "gone.png", "imgs/1.png", "unlisted.png"], Enumerable.Range(0, ds.Count).Select(ds.KeyOf));
        var samples = LoadAll(ds);
        Assert.Equal("first", samples[0]!.Caption);
        Assert.Null(samples[1]);
        Assert.Equal("second", samples[2]!.Caption);
        Assert.Null(samples[3]);
        var by = ds.Skips.ByReason;
        Assert.Equal(1, by[SkipReasons.MissingImage]);
        Assert.Equal(1, by[SkipReasons.MissingCaption]);
        Assert.Equal(1, by[SkipReasons.BadMetadata]);
        Assert.Equal(3, warnings.Count);
        Assert.Contains(warnings, w => w.Contains("metadata.jsonl:4"));
        foreach (var s in samples) s?.Dispose();
    }

    [Fact]
    public void WebDataset_tars_group_members_by_key_with_txt_or_json_captions()
    {
        string d = Folder("wds");
        TestImages.WriteTar(Path.Combine(d, "shard-001.tar"),
        [
            ("s/000.jpg", TestImages.Encode(16, 8, SKEncodedImageFormat.Jpeg)),
            ("s/000.txt", Encoding.UTF8.GetBytes("from txt")),
            ("s/001.png", TestImages.Png(8, 8)),
            ("s/001.json", Encoding.UTF8.GetBytes("""{"caption": "from json", "width": 8}""")),
            ("s/002.webp", TestImages.Encode(8, 8, SKEncodedImageFormat.Webp)),
            ("s/002.cls", Encoding.UTF8.GetBytes("3")),
        ]);
        TestImages.WriteTar(Path.Combine(d, "shard-000.tar"),
        [
            ("a.png", TestImages.Png(9, 8)),
            ("a.seg.png", TestImages.Png(8, 8)),
            ("a.txt", Encoding.UTF8.GetBytes("first shard")),
        ]);
        using var ds = ImageCaptionDatasets.Open([d], Px8);
        Assert.IsType<WebDatasetTarDataset>(ds);
        Assert.Equal(["shard-000/a", "shard-001/s/000", "shard-001/s/001", "shard-001/s/002"], Enumerable.Range(0, ds.Count).Select(ds.KeyOf));
        var samples = LoadAll(ds);
        Assert.Equal("first shard", samples[0]!.Caption);
        Assert.Equal("from txt", samples[1]!.Caption);
        Assert.Equal("from json", samples[2]!.Caption);
        Assert.Null(samples[3]);
        Assert.Equal(1, ds.Skips.ByReason[SkipReasons.MissingCaption]);
        foreach (var s in samples) s?.Dispose();

        // a single .tar file as the path, and two .tar paths read as one dataset
        using var one = ImageCaptionDatasets.Open([Path.Combine(d, "shard-001.tar")], Px8);
        Assert.Equal(3, one.Count);
        using var two = ImageCaptionDatasets.Open([Path.Combine(d, "shard-001.tar"), Path.Combine(d, "shard-000.tar")], Px8);
        Assert.Equal(4, two.Count);
        Assert.Equal("shard-000/a", two.KeyOf(0));
    }

    [Fact]
    public void Bad_samples_are_skipped_once_each_and_counted_by_reason()
    {
        string d = Folder("bad");
        File.WriteAllBytes(Path.Combine(d, "good.png"), TestImages.Png(8, 8));
        File.WriteAllText(Path.Combine(d, "good.txt"), "fine");
        File.WriteAllBytes(Path.Combine(d, "corrupt.png"), Encoding.ASCII.GetBytes("this is not a png"));
        File.WriteAllText(Path.Combine(d, "corrupt.txt"), "broken");
        var truncated = TestImages.Png(32, 32);
        File.WriteAllBytes(Path.Combine(d, "truncated.png"), truncated[..(truncated.Length / 2)]);
        File.WriteAllText(Path.Combine(d, "truncated.txt"), "half");
        File.WriteAllBytes(Path.Combine(d, "nocaption.png"), TestImages.Png(8, 8));
        File.WriteAllBytes(Path.Combine(d, "empty.png"), TestImages.Png(8, 8));
        File.WriteAllText(Path.Combine(d, "empty.txt"), "  \n ");
        File.WriteAllBytes(Path.Combine(d, "bomb.png"), TestImages.PngHeaderOnly(20_000, 10_000));
        File.WriteAllText(Path.Combine(d, "bomb.txt"), "huge");

        var warnings = new List<string>();
        using var ds = ImageCaptionDatasets.Open([d], Px8, warnings.Add);
        Assert.Equal(6, ds.Count);
        for (int pass = 0; pass < 2; pass++)
        {
            var samples = LoadAll(ds);
            Assert.Single(samples, s => s != null);
            foreach (var s in samples) s?.Dispose();
        }
        var by = ds.Skips.ByReason;
        Assert.Equal(2, by[SkipReasons.CorruptImage]);
        Assert.Equal(1, by[SkipReasons.MissingCaption]);
        Assert.Equal(1, by[SkipReasons.EmptyCaption]);
        Assert.Equal(1, by[SkipReasons.ImageTooLarge]);
        Assert.Equal(5, ds.Skips.Total);
        Assert.Equal(5, warnings.Count);
        Assert.Contains(warnings, w => w.Contains("bomb.png") && w.Contains("megapixels"));
        Assert.Equal("5 (corrupt image 2, empty caption 1, image too large 1, missing caption 1)", ds.Skips.ToString());
    }

    [Fact]
    public void Missing_or_empty_paths_fail_with_a_clear_message()
    {
        string missing = Path.Combine(_dir, "nope");
        var e = Assert.Throws<EllaException>(() => ImageCaptionDatasets.Open([missing], Px8));
        Assert.Contains(missing, e.Message);
        string empty = Folder("empty");
        File.WriteAllText(Path.Combine(empty, "readme.txt"), "no images");
        e = Assert.Throws<EllaException>(() => ImageCaptionDatasets.Open([empty], Px8));
        Assert.Contains(empty, e.Message);
        Assert.Contains("no samples", e.Message);
        Assert.Throws<EllaException>(() => ImageCaptionDatasets.Open([], Px8));
    }

    [Fact]
    public void Several_paths_are_concatenated_with_unique_keys()
    {
        string a = Folder("one"), b = Folder("two");
        foreach (var d in new[] { a, b })
        {
            File.WriteAllBytes(Path.Combine(d, "x.png"), TestImages.Png(8, 8));
            File.WriteAllText(Path.Combine(d, "x.txt"), Path.GetFileName(d));
        }
        File.WriteAllBytes(Path.Combine(b, "y.png"), TestImages.Png(8, 8));
        using var ds = ImageCaptionDatasets.Open([a, b], Px8);
        Assert.Equal(3, ds.Count);
        Assert.Equal(["one/x.png", "two/x.png", "two/y.png"], Enumerable.Range(0, 3).Select(ds.KeyOf));
        var samples = LoadAll(ds);
        Assert.Equal("two", samples[1]!.Caption);
        Assert.Equal("two/x.png", samples[1]!.Key);
        Assert.Equal(1, ds.Skips.ByReason[SkipReasons.MissingCaption]);
        foreach (var s in samples) s?.Dispose();
    }

    [Theory]
    [InlineData(640, 480, 256, 341, 256)]
    [InlineData(480, 640, 256, 256, 341)]
    [InlineData(300, 300, 512, 512, 512)]
    [InlineData(1000, 333, 64, 192, 64)]
    public void Short_side_is_resized_to_the_resolution(int w, int h, int r, int ew, int eh)
    {
        Assert.Equal((ew, eh), ImagePreprocessor.ResizedSize(w, h, r));
    }

    [Fact]
    public void Resize_is_antialiased_and_output_is_square()
    {
        // a 1-pixel checkerboard downscaled 4× must average to grey, not alias to black or white
        using var board = (arange(32).reshape(1, 32) + arange(16).reshape(16, 1)).remainder(2).to_type(ScalarType.Float32).expand(3, 16, 32).contiguous();
        using var x = ImagePreprocessor.Preprocess(board, new ImagePreprocessing(4), null);
        Assert.Equal([3L, 4, 4], x.shape);
        Assert.True(x.abs().max().item<float>() < 0.1f, "antialiased downscale of a checkerboard is grey");
    }

    [Fact]
    public void Center_crop_takes_the_middle_as_torchvision_does()
    {
        using var img = arange(8).to_type(ScalarType.Float32).div(10).expand(3, 4, 8).contiguous(); // w 8, h 4: no resize at R 4
        using var x = ImagePreprocessor.Preprocess(img, new ImagePreprocessing(4), null);
        using var expected = img.narrow(2, 2, 4) * 2 - 1;
        Assert.True(x.allclose(expected));
    }

    [Fact]
    public void Random_crop_and_flip_follow_the_generator()
    {
        using var img = (arange(10).reshape(1, 10) * 0.05 + arange(6).reshape(6, 1) * 0.1).to_type(ScalarType.Float32).expand(3, 6, 10).contiguous();
        var p = new ImagePreprocessing(6, RandomCrop: true, RandomFlip: true);
        var seen = new HashSet<string>();
        for (ulong seed = 0; seed < 12; seed++)
        {
            using var g1 = new Generator(seed);
            using var a = ImagePreprocessor.Preprocess(img, p, g1);
            using var g2 = new Generator(seed);
            using var b = ImagePreprocessor.Preprocess(img, p, g2);
            Assert.True(a.eq(b).all().item<bool>(), "same seed, same crop and flip");

            // torchvision's draw order: top = randint(0, h-R+1), left = randint(0, w-R+1), flip = rand(1) < 0.5
            using var g3 = new Generator(seed);
            using var top = randint(0, 1, [1], generator: g3);
            using var left = randint(0, 5, [1], generator: g3);
            using var u = rand(1, generator: g3);
            var crop = img.narrow(2, left.item<long>(), 6);
            if (u.item<float>() < 0.5f) crop = crop.flip(2);
            using var expected = crop * 2 - 1;
            Assert.True(a.allclose(expected, 1e-6, 1e-6));
            seen.Add($"{left.item<long>()}{u.item<float>() < 0.5f}");
        }
        Assert.True(seen.Count > 3, "different seeds give different crops and flips");
    }

    [Fact]
    public void Alpha_is_composited_on_white()
    {
        using var x = ImagePreprocessor.Decode(TestImages.Png(4, 4, alpha: 0));
        Assert.True(x.allclose(ones(3, 4, 4)));
    }

    [Fact]
    public void Semi_transparent_pixels_are_blended_with_white()
    {
        using var x = ImagePreprocessor.Decode(TestImages.Png(4, 4, alpha: 128));
        float a = 128 / 255f;
        for (int c = 0; c < 3; c++)
            Assert.Equal(TestImages.Value(c, 3, 2) * a + (1 - a), x[c, 2, 3].item<float>(), 0.01f);
    }

    [Theory]
    [InlineData(SKEncodedImageFormat.Jpeg)]
    [InlineData(SKEncodedImageFormat.Png)]
    public void Large_images_are_reduced_before_the_float_conversion_without_changing_the_result(SKEncodedImageFormat format)
    {
        var bytes = TestImages.Gradient(400, 200, format);
        using var reduced = ImagePreprocessor.Decode(bytes, 16);
        long h = reduced.shape[1], w = reduced.shape[2];
        Assert.InRange(h, 32, 64); // short side kept at least 2× the resolution, at most 4×
        Assert.InRange(w, 2 * h - 1, 2 * h + 1);
        using var full = ImagePreprocessor.Decode(bytes);
        Assert.Equal([3L, 200, 400], full.shape);
        var p = new ImagePreprocessing(16);
        using var a = ImagePreprocessor.Preprocess(reduced, p, null);
        using var b = ImagePreprocessor.Preprocess(full, p, null);
        Assert.True((a - b).abs().max().item<float>() < 0.03f, $"max difference {(a - b).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(1, 8, 4)]
    [InlineData(6, 4, 8)]
    [InlineData(8, 4, 8)]
    [InlineData(3, 8, 4)]
    public void Exif_orientation_is_applied(ushort orientation, int w, int h)
    {
        using var x = ImagePreprocessor.Decode(TestImages.JpegWithOrientation(8, 4, orientation));
        Assert.Equal([3L, h, w], x.shape);
        // the reddest column (x = 7 in the stored image) ends where the orientation puts it
        using var red = x[0];
        if (orientation == 6) Assert.True(red[7, 0].item<float>() > red[0, 0].item<float>() + 0.2f); // rotated 90° clockwise: stored right edge at the bottom
        if (orientation == 8) Assert.True(red[0, 0].item<float>() > red[7, 0].item<float>() + 0.2f);
        if (orientation == 3) Assert.True(red[0, 0].item<float>() > red[0, 7].item<float>() + 0.2f);
    }

    [Fact]
    public void Loading_leaks_no_tensors()
    {
        string d = Folder("leak");
        File.WriteAllBytes(Path.Combine(d, "a.png"), TestImages.Png(12, 9));
        File.WriteAllText(Path.Combine(d, "a.txt"), "a");
        File.WriteAllBytes(Path.Combine(d, "b.png"), Encoding.ASCII.GetBytes("bad"));
        File.WriteAllText(Path.Combine(d, "b.txt"), "b");
        using var ds = ImageCaptionDatasets.Open([d], new ImagePreprocessing(8, true, true));
        using var g = new Generator(3);
        for (int i = 0; i < 2; i++) ds.TryLoad(i, g)?.Dispose();
        DisposeScopeManager.Statistics.Reset();
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int round = 0; round < 3; round++)
            for (int i = 0; i < 2; i++) ds.TryLoad(i, g)?.Dispose();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
