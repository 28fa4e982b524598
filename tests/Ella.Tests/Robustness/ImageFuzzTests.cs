using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using System.Text;
using Ella.Imaging;
using Ella.Tests.Infrastructure;
using SkiaSharp;

namespace Ella.Tests.Robustness;

/// <summary>
/// Odd image files, written by hand (PNG chunks, JPEG segments) or with SkiaSharp: every one decodes to the right
/// pixels or is refused with one line naming the file; a decompression bomb is refused from its header alone; and
/// `ella dpg score` on a folder holding them never fails internally.
/// </summary>
public sealed class ImageFuzzTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-img-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    static byte[] Chunk(string type, byte[] data)
    {
        var result = new byte[12 + data.Length];
        BinaryPrimitives.WriteInt32BigEndian(result, data.Length);
        Encoding.ASCII.GetBytes(type).CopyTo(result, 4);
        data.CopyTo(result, 8);
        var crc = new Crc32();
        crc.Append(result.AsSpan(4, 4 + data.Length));
        BinaryPrimitives.WriteUInt32BigEndian(result.AsSpan(8 + data.Length), crc.GetCurrentHashAsUInt32());
        return result;
    }

    /// <summary>A PNG from raw scanlines (filter byte 0 each), any bit depth and color type.</summary>
    static byte[] Png(int width, int height, byte bitDepth, byte colorType, Func<int, byte[]> row, byte[]? palette = null, byte[]? idatOverride = null)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = bitDepth; ihdr[9] = colorType;
        using var raw = new MemoryStream();
        if (idatOverride == null)
            for (int y = 0; y < height; y++) { raw.WriteByte(0); raw.Write(row(y)); }
        using var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true)) zs.Write(raw.ToArray());
        var parts = new List<byte[]> { new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }, Chunk("IHDR", ihdr) };
        if (palette != null) parts.Add(Chunk("PLTE", palette));
        parts.Add(Chunk("IDAT", idatOverride ?? z.ToArray()));
        parts.Add(Chunk("IEND", []));
        return parts.SelectMany(p => p).ToArray();
    }

    string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static (byte R, byte G, byte B) Pixel(RgbImage im, int x, int y)
    {
        int i = (y * im.Width + x) * 3;
        return (im.Pixels[i], im.Pixels[i + 1], im.Pixels[i + 2]);
    }

    [Fact]
    public void Bit_depths_palettes_grayscale_and_alpha_decode_to_the_right_pixels()
    {
        // 16-bit RGB: 0x1234 → 0x12 (Skia rounds; within 1).
        var rgb16 = RgbImage.Load(Write("rgb16.png", Png(3, 2, 16, 2, y => Enumerable.Range(0, 3).SelectMany(x => new byte[] { 0x12, 0x34, (byte)(x * 80), 0, 0xFF, 0xFF }).ToArray())));
        Assert.Equal((3, 2), (rgb16.Width, rgb16.Height));
        var p = Pixel(rgb16, 2, 1);
        Assert.InRange(p.R, 0x12, 0x13); Assert.InRange(p.G, 159, 161); Assert.Equal(255, p.B);
        // Palette: indices into three colours.
        var palette = new byte[] { 255, 0, 0, 0, 255, 0, 0, 0, 255 };
        var pal = RgbImage.Load(Write("palette.png", Png(3, 1, 8, 3, _ => [0, 1, 2], palette)));
        Assert.Equal((255, 0, 0), Pixel(pal, 0, 0)); Assert.Equal((0, 0, 255), Pixel(pal, 2, 0));
        // Grayscale 8-bit and 16-bit, gray+alpha.
        var gray = RgbImage.Load(Write("gray.png", Png(2, 1, 8, 0, _ => [7, 200])));
        Assert.Equal((200, 200, 200), Pixel(gray, 1, 0));
        var gray16 = RgbImage.Load(Write("gray16.png", Png(1, 1, 16, 0, _ => [0x80, 0x00])));
        Assert.InRange(Pixel(gray16, 0, 0).R, 127, 128);
        var grayAlpha = RgbImage.Load(Write("gray-alpha.png", Png(1, 1, 8, 4, _ => [90, 10])));
        Assert.Equal((90, 90, 90), Pixel(grayAlpha, 0, 0));
        // RGBA: alpha is dropped, the colour kept as stored (PIL's convert("RGB")).
        var rgba = RgbImage.Load(Write("rgba.png", Png(2, 1, 8, 6, _ => [10, 20, 30, 0, 40, 50, 60, 128])));
        Assert.Equal((10, 20, 30), Pixel(rgba, 0, 0)); Assert.Equal((40, 50, 60), Pixel(rgba, 1, 0));
        // 1-bit grayscale.
        var bits = RgbImage.Load(Write("1bit.png", Png(8, 1, 1, 0, _ => [0b10100000])));
        Assert.Equal((255, 255, 255), Pixel(bits, 0, 0)); Assert.Equal((0, 0, 0), Pixel(bits, 1, 0));
    }

    [Fact]
    public void A_decompression_bomb_is_refused_by_its_header_before_decoding()
    {
        // 30000×30000 RGB declared, a few bytes of data: decoding would need 3.6 GB.
        string bomb = Write("bomb.png", Png(30000, 30000, 8, 2, _ => [], idatOverride: [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
        Assert.True(new FileInfo(bomb).Length < 200);
        var e = Assert.Throws<EllaException>(() => RgbImage.Load(bomb));
        Assert.Contains(bomb, e.Message);
        Assert.Contains("30000×30000", e.Message);
        Assert.Contains("--max-pixels", e.Message);
        // A lower limit refuses ordinary images too; a higher one lets them through.
        string small = Write("small.png", Png(10, 10, 8, 2, _ => new byte[30]));
        Assert.Throws<EllaException>(() => RgbImage.Load(small, maxPixels: 99));
        Assert.Equal(10, RgbImage.Load(small, maxPixels: 100).Width);
    }

    [Fact]
    public void Broken_files_get_one_line_naming_the_file()
    {
        var good = Png(16, 16, 8, 2, y => Enumerable.Range(0, 48).Select(i => (byte)(i * y)).ToArray());
        using var bitmap = new SKBitmap(16, 16);
        bitmap.Erase(SKColors.Orange);
        var jpeg = bitmap.Encode(SKEncodedImageFormat.Jpeg, 90).ToArray();
        var cases = new (string Name, byte[] Bytes)[]
        {
            ("zero.png", []), ("one-byte.png", [137]), ("signature-only.png", good[..8]), ("truncated.png", good[..(good.Length / 2)]),
            ("no-iend.png", good[..^12]), ("truncated.jpg", jpeg[..(jpeg.Length / 2)]), ("text.png", Encoding.UTF8.GetBytes("not an image")),
            ("bad-crc.png", good.Select((b, i) => i == 30 ? (byte)(b ^ 0xFF) : b).ToArray()),
            ("zero-size.png", Png(0, 0, 8, 2, _ => [])), ("bad-depth.png", Png(2, 2, 7, 2, _ => new byte[6])),
            ("bad-palette-index.png", Png(2, 1, 8, 3, _ => [0, 9], [1, 2, 3])),
        };
        foreach (var (name, bytes) in cases)
        {
            string path = Write(name, bytes);
            try
            {
                var im = RgbImage.Load(path);
                Assert.True(im.Width > 0 && im.Height > 0, name); // a decoder may accept some of these; then the image is whole
            }
            catch (EllaException e)
            {
                Assert.Contains(path, e.Message);
                Assert.DoesNotContain('\n', e.Message);
            }
        }
        Assert.Throws<EllaException>(() => RgbImage.Load(Path.Combine(_dir, "zero.png")));
        Assert.Throws<EllaException>(() => RgbImage.Load(Path.Combine(_dir, "truncated.png")));
        Assert.Throws<EllaException>(() => RgbImage.Load(_dir));
        Assert.Throws<EllaException>(() => RgbImage.Load(Path.Combine(_dir, "missing.png")));
    }

    /// <summary>A JPEG with an APP1 Exif segment holding one Orientation tag.</summary>
    static byte[] WithExifOrientation(byte[] jpeg, ushort orientation)
    {
        var tiff = new List<byte> { (byte)'M', (byte)'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, (byte)(orientation >> 8), (byte)orientation, 0, 0, 0, 0, 0, 0 };
        var payload = Encoding.ASCII.GetBytes("Exif\0\0").Concat(tiff).ToArray();
        int length = payload.Length + 2;
        var app1 = new byte[] { 0xFF, 0xE1, (byte)(length >> 8), (byte)length }.Concat(payload);
        return jpeg[..2].Concat(app1).Concat(jpeg[2..]).ToArray();
    }

    [Theory]
    [InlineData(1)] [InlineData(2)] [InlineData(3)] [InlineData(4)] [InlineData(5)] [InlineData(6)] [InlineData(7)] [InlineData(8)]
    public void A_JPEG_is_shown_as_its_EXIF_orientation_says(int orientation)
    {
        // 32×16: left half red, right half blue, and a green top-left 8×8 block to tell the corners apart.
        using var bitmap = new SKBitmap(32, 16);
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.Red);
            canvas.DrawRect(16, 0, 16, 16, new SKPaint { Color = SKColors.Blue });
            canvas.DrawRect(0, 0, 8, 8, new SKPaint { Color = SKColors.Lime });
        }
        var jpeg = WithExifOrientation(bitmap.Encode(SKEncodedImageFormat.Jpeg, 95).ToArray(), (ushort)orientation);
        var image = RgbImage.Load(Write($"exif{orientation}.jpg", jpeg));
        bool swap = orientation >= 5;
        Assert.Equal(swap ? (16, 32) : (32, 16), (image.Width, image.Height));
        // Where the stored top-left (green) corner lands once displayed.
        var (gx, gy) = orientation switch
        {
            1 => (2, 2), 2 => (29, 2), 3 => (29, 13), 4 => (2, 13), 5 => (2, 2), 6 => (13, 2), 7 => (13, 29), _ => (2, 29),
        };
        var g = Pixel(image, gx, gy);
        Assert.True(g.G > 200 && g.R < 60 && g.B < 60, $"orientation {orientation}: ({gx},{gy}) = {g}");
    }

    [Fact]
    public void Dpg_score_on_odd_images_never_fails_internally()
    {
        string images = Path.Combine(_dir, "grids");
        Directory.CreateDirectory(images);
        string dpg = Fixtures.PathOf("dpg", "four-images");
        var names = Directory.GetFiles(Path.Combine(dpg, "images")).Select(Path.GetFileNameWithoutExtension).ToList();
        var odd = new byte[][]
        {
            [], Png(30000, 30000, 8, 2, _ => [], idatOverride: [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]),
            Png(128, 128, 16, 6, _ => new byte[128 * 8]), Png(128, 128, 8, 3, _ => new byte[128], [9, 9, 9]), Encoding.UTF8.GetBytes("text"),
            Png(128, 128, 8, 0, _ => new byte[128]) is var t ? t[..(t.Length / 2)] : [], Png(3, 3, 8, 2, _ => new byte[9]),
        };
        for (int i = 0; i < names.Count; i++) File.WriteAllBytes(Path.Combine(images, names[i] + ".png"), odd[i % odd.Length]);
        var r = CliRunner.Run("dpg", "score", "--images", images, "--csv", Path.Combine(dpg, "dpg_bench.csv"), "--resolution", "64",
            "--judge", "replay", "--answers", Path.Combine(dpg, "answers.jsonl"), "--out", Path.Combine(_dir, "out"));
        Assert.True(r.ExitCode is 0 or 2, r.Error);
        Assert.DoesNotContain("internal error", r.Error);
        Assert.DoesNotContain("   at ", r.Error + r.Out);
    }
}
