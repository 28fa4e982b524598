using System.Buffers.Binary;
using System.Formats.Tar;
using System.IO.Hashing;
using System.Text;
using SkiaSharp;

namespace Ella.Tests.Training.Data;

/// <summary>Tiny images and datasets written by the tests.</summary>
internal static class TestImages
{
    /// <summary>A w×h image whose pixel (x, y) is (16x+1, 16y+2, 7(x+y)+3), with alpha 255 unless given.</summary>
    public static byte[] Encode(int w, int h, SKEncodedImageFormat format, byte alpha = 255, int quality = 100)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                bitmap.SetPixel(x, y, new SKColor((byte)(16 * x + 1), (byte)(16 * y + 2), (byte)(7 * (x + y) + 3), alpha));
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(format, quality);
        return data.ToArray();
    }

    public static byte[] Png(int w, int h, byte alpha = 255) => Encode(w, h, SKEncodedImageFormat.Png, alpha);

    /// <summary>A smooth image: red rises left to right, green top to bottom, blue 128.</summary>
    public static byte[] Gradient(int w, int h, SKEncodedImageFormat format)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                bitmap.SetPixel(x, y, new SKColor((byte)(255 * x / (w - 1)), (byte)(255 * y / (h - 1)), 128, 255));
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(format, 95);
        return data.ToArray();
    }

    /// <summary>The expected float value in [0, 1] of channel c at (x, y) of <see cref="Encode"/>'s pattern.</summary>
    public static float Value(int c, int x, int y) => c switch { 0 => (16 * x + 1) / 255f, 1 => (16 * y + 2) / 255f, _ => (7 * (x + y) + 3) / 255f };

    /// <summary>A PNG whose header claims <paramref name="w"/>×<paramref name="h"/> pixels but holds no image data.</summary>
    public static byte[] PngHeaderOnly(int w, int h)
    {
        using var ms = new MemoryStream();
        ms.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, w);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
        Chunk(ms, "IHDR", ihdr);
        Chunk(ms, "IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    static void Chunk(Stream s, string type, byte[] data)
    {
        var len = new byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var typed = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        s.Write(typed);
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32.HashToUInt32(typed));
        s.Write(crc);
    }

    /// <summary>A JPEG with an EXIF APP1 segment carrying <paramref name="orientation"/> (1–8).</summary>
    public static byte[] JpegWithOrientation(int w, int h, ushort orientation)
    {
        var jpeg = Encode(w, h, SKEncodedImageFormat.Jpeg);
        var tiff = new List<byte> { (byte)'M', (byte)'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, (byte)(orientation >> 8), (byte)orientation, 0, 0, 0, 0, 0, 0 };
        var payload = Encoding.ASCII.GetBytes("Exif\0\0").Concat(tiff).ToArray();
        int segLen = payload.Length + 2;
        var app1 = new byte[] { 0xFF, 0xE1, (byte)(segLen >> 8), (byte)segLen }.Concat(payload);
        return jpeg.Take(2).Concat(app1).Concat(jpeg.Skip(2)).ToArray();
    }

    public static void WriteTar(string path, IEnumerable<(string Name, byte[] Data)> members)
    {
        using var fs = File.Create(path);
        using var writer = new TarWriter(fs, TarEntryFormat.Pax);
        foreach (var (name, data) in members)
        {
            var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data) };
            writer.WriteEntry(entry);
        }
    }
}
