using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Imaging;

/// <summary>An 8-bit RGB image in row-major HWC order.</summary>
public sealed class RgbImage
{
    public int Width { get; }
    public int Height { get; }
    /// <summary>Width × Height × 3 bytes.</summary>
    public byte[] Pixels { get; }

    public RgbImage(int width, int height, byte[]? pixels = null)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), "image size must be positive");
        Width = width;
        Height = height;
        Pixels = pixels ?? new byte[width * height * 3];
        if (Pixels.Length != width * height * 3) throw new ArgumentException("pixel buffer size does not match the image size");
    }

    /// <summary>From a float image [3, H, W] in [0, 1]: round(x·255), as diffusers' numpy_to_pil does.</summary>
    public static RgbImage FromTensor(Tensor chw)
    {
        using var scope = NewDisposeScope();
        var bytes = (chw.to_type(ScalarType.Float32).cpu().clamp(0.0, 1.0) * 255).round().to_type(ScalarType.Byte).permute(1, 2, 0).contiguous();
        return new RgbImage((int)chw.shape[2], (int)chw.shape[1], bytes.data<byte>().ToArray());
    }

    /// <summary>float32 [3, H, W] in [0, 1].</summary>
    public Tensor ToTensor()
    {
        using var scope = NewDisposeScope();
        var t = tensor(Pixels).reshape(Height, Width, 3).permute(2, 0, 1).to_type(ScalarType.Float32) / 255.0;
        return t.MoveToOuterDisposeScope();
    }

    public RgbImage Crop(int x, int y, int width, int height)
    {
        if (x < 0 || y < 0 || x + width > Width || y + height > Height) throw new ArgumentOutOfRangeException(nameof(x), "crop outside the image");
        var result = new RgbImage(width, height);
        for (int row = 0; row < height; row++)
            Array.Copy(Pixels, ((y + row) * Width + x) * 3, result.Pixels, row * width * 3, width * 3);
        return result;
    }

    public void Paste(RgbImage other, int x, int y)
    {
        for (int row = 0; row < other.Height && y + row < Height; row++)
        {
            int w = Math.Min(other.Width, Width - x);
            if (w <= 0) return;
            Array.Copy(other.Pixels, row * other.Width * 3, Pixels, ((y + row) * Width + x) * 3, w * 3);
        }
    }

    /// <summary>Each pixel repeated <paramref name="factor"/> times in both directions (nearest neighbour: the hard
    /// edges of small images stay hard); factor 1 returns this image.</summary>
    public RgbImage UpscaleNearest(int factor)
    {
        if (factor < 1) throw new ArgumentOutOfRangeException(nameof(factor), "the upscale factor must be at least 1");
        if (factor == 1) return this;
        int w = Width * factor;
        var result = new RgbImage(w, Height * factor);
        var row = new byte[w * 3];
        for (int y = 0; y < Height; y++)
        {
            for (int x = 0; x < Width; x++)
                for (int k = 0; k < factor; k++)
                    Array.Copy(Pixels, (y * Width + x) * 3, row, ((x * factor) + k) * 3, 3);
            for (int k = 0; k < factor; k++) Array.Copy(row, 0, result.Pixels, (y * factor + k) * w * 3, row.Length);
        }
        return result;
    }

    public void Fill(byte r, byte g, byte b)
    {
        for (int i = 0; i < Pixels.Length; i += 3) { Pixels[i] = r; Pixels[i + 1] = g; Pixels[i + 2] = b; }
    }

    /// <summary>Encodes as PNG with SkiaSharp, adding one tEXt chunk per metadata entry (e.g. "parameters").</summary>
    public byte[] EncodePng(IReadOnlyDictionary<string, string>? text = null)
    {
        var info = new SKImageInfo(Width, Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var rgba = new byte[Width * Height * 4];
        for (int i = 0, j = 0; i < Pixels.Length; i += 3, j += 4)
        {
            rgba[j] = Pixels[i]; rgba[j + 1] = Pixels[i + 1]; rgba[j + 2] = Pixels[i + 2]; rgba[j + 3] = 255;
        }
        using var image = SKImage.FromPixelCopy(info, rgba, Width * 4);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        var png = data.ToArray();
        return text is { Count: > 0 } ? PngText.Insert(png, text) : png;
    }

    /// <summary>Writes a PNG atomically (temporary file, then rename).</summary>
    public void SavePng(string path, IReadOnlyDictionary<string, string>? text = null) => IO.AtomicFile.WriteAllBytes(path, EncodePng(text));

    /// <summary>Largest image <see cref="Load"/> decodes by default: PIL's limit (about 89.5 megapixels).</summary>
    public const long DefaultMaxPixels = 89_478_485;

    /// <summary>The limit <see cref="Load"/> uses when none is given (the CLI's --max-pixels sets it for one command).</summary>
    public static long MaxPixels { get; private set; } = DefaultMaxPixels;

    /// <summary>Sets <see cref="MaxPixels"/> until the returned scope is disposed.</summary>
    public static IDisposable LimitPixels(long maxPixels)
    {
        long previous = MaxPixels;
        MaxPixels = maxPixels;
        return new RestoreLimit(previous);
    }

    sealed class RestoreLimit(long previous) : IDisposable
    {
        public void Dispose() => MaxPixels = previous;
    }

    /// <summary>
    /// Decodes a PNG or JPEG file (any bit depth, palette, grayscale; alpha is dropped as PIL's convert("RGB") does;
    /// a JPEG's EXIF orientation is applied). The size is read from the header first: an image above
    /// <paramref name="maxPixels"/> (a decompression bomb) is refused before decoding. Empty, truncated or undecodable
    /// files get an <see cref="EllaException"/> naming the file.
    /// </summary>
    public static RgbImage Load(string path, long? maxPixels = null)
    {
        if (Directory.Exists(path)) throw new EllaException($"{path}: is a folder, not an image");
        if (!File.Exists(path)) throw new EllaException($"{path}: image not found");
        if (new FileInfo(path).Length == 0) throw new EllaException($"{path}: empty file (0 bytes), not an image");
        using var stream = File.OpenRead(path);
        return Decode(stream, path, maxPixels).Image;
    }

    /// <summary>
    /// Decodes PNG or JPEG bytes (an upload, a base64 field) as <see cref="Load"/> decodes a file; <paramref name="name"/>
    /// names the source in errors. Also returns the alpha channel (width × height bytes, EXIF-oriented) when the image
    /// has one, or null for an opaque image.
    /// </summary>
    public static (RgbImage Image, byte[]? Alpha) Decode(byte[] data, string name, long? maxPixels = null)
    {
        if (data.Length == 0) throw new EllaException($"{name}: empty (0 bytes), not an image");
        using var stream = new MemoryStream(data, writable: false);
        return Decode(stream, name, maxPixels);
    }

    static (RgbImage Image, byte[]? Alpha) Decode(Stream stream, string name, long? maxPixels)
    {
        long limit = maxPixels ?? MaxPixels;
        using var codec = SKCodec.Create(stream, out var created)
                          ?? throw new EllaException($"{name}: not a readable PNG or JPEG image ({created})");
        var info = codec.Info;
        long pixels = (long)info.Width * info.Height;
        if (info.Width <= 0 || info.Height <= 0) throw new EllaException($"{name}: the image header gives a size of {info.Width}×{info.Height}");
        if (pixels > limit)
            throw new EllaException($"{name}: {info.Width}×{info.Height} is {pixels:N0} pixels, above the limit of {limit:N0} (--max-pixels); refused before decoding");
        var target = new SKImageInfo(info.Width, info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(target);
        var result = codec.GetPixels(target, bitmap.GetPixels());
        if (result == SKCodecResult.IncompleteInput) throw new EllaException($"{name}: the image is truncated");
        if (result != SKCodecResult.Success) throw new EllaException($"{name}: cannot decode the image ({result})");
        var rgba = bitmap.Bytes;
        var image = new RgbImage(info.Width, info.Height);
        bool hasAlpha = info.AlphaType != SKAlphaType.Opaque;
        var alpha = hasAlpha ? new RgbImage(info.Width, info.Height) : null;
        int stride = bitmap.RowBytes;
        for (int y = 0; y < image.Height; y++)
            for (int x = 0; x < image.Width; x++)
            {
                int s = y * stride + x * 4, d = (y * image.Width + x) * 3;
                image.Pixels[d] = rgba[s]; image.Pixels[d + 1] = rgba[s + 1]; image.Pixels[d + 2] = rgba[s + 2];
                if (alpha != null) alpha.Pixels[d] = alpha.Pixels[d + 1] = alpha.Pixels[d + 2] = rgba[s + 3];
            }
        byte[]? alphaBytes = null;
        if (alpha != null)
        {
            var oriented = alpha.Oriented(codec.EncodedOrigin);
            alphaBytes = new byte[oriented.Width * oriented.Height];
            for (int i = 0; i < alphaBytes.Length; i++) alphaBytes[i] = oriented.Pixels[i * 3];
        }
        return (image.Oriented(codec.EncodedOrigin), alphaBytes);
    }

    /// <summary>The image as displayed under an EXIF orientation (1–8).</summary>
    public RgbImage Oriented(SKEncodedOrigin origin)
    {
        int w = Width, h = Height;
        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        if (origin == SKEncodedOrigin.TopLeft || (int)origin < 1 || (int)origin > 8) return this;
        var result = swap ? new RgbImage(h, w) : new RgbImage(w, h);
        for (int y = 0; y < result.Height; y++)
            for (int x = 0; x < result.Width; x++)
            {
                var (sx, sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (w - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (w - 1 - x, h - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, h - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (y, h - 1 - x),
                    SKEncodedOrigin.RightBottom => (w - 1 - y, h - 1 - x),
                    _ => (w - 1 - y, x), // LeftBottom
                };
                Array.Copy(Pixels, (sy * w + sx) * 3, result.Pixels, (y * result.Width + x) * 3, 3);
            }
        return result;
    }
}

/// <summary>PNG tEXt chunks (Latin-1 keyword and text), the way A1111 stores "parameters".</summary>
public static class PngText
{
    public static byte[] Insert(byte[] png, IReadOnlyDictionary<string, string> entries)
    {
        // Insert right after IHDR (8-byte signature + 25-byte IHDR chunk).
        const int afterHeader = 8 + 4 + 4 + 13 + 4;
        using var output = new MemoryStream();
        output.Write(png, 0, afterHeader);
        foreach (var (key, value) in entries)
        {
            if (IsLatin1(value)) WriteChunk(output, "tEXt", [.. Encoding.Latin1.GetBytes(key), 0, .. Encoding.Latin1.GetBytes(value)]);
            // Like PIL (and so A1111): text outside Latin-1 goes into an uncompressed iTXt chunk in UTF-8.
            else WriteChunk(output, "iTXt", [.. Encoding.Latin1.GetBytes(key), 0, 0, 0, 0, 0, .. Encoding.UTF8.GetBytes(value)]);
        }
        output.Write(png, afterHeader, png.Length - afterHeader);
        return output.ToArray();
    }

    /// <summary>All tEXt chunks of a PNG.</summary>
    public static Dictionary<string, string> Read(byte[] png)
    {
        var result = new Dictionary<string, string>();
        int p = 8;
        while (p + 12 <= png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(p));
            string type = Encoding.ASCII.GetString(png, p + 4, 4);
            var data = png.AsSpan(p + 8, length);
            int zero = data.IndexOf((byte)0);
            if (type == "tEXt" && zero > 0)
                result[Encoding.Latin1.GetString(data[..zero])] = Encoding.Latin1.GetString(data[(zero + 1)..]);
            else if (type == "iTXt" && zero > 0 && data.Length > zero + 3 && data[zero + 1] == 0)
            {
                // keyword \0 flag method language \0 translated \0 text
                var rest = data[(zero + 3)..];
                int lang = rest.IndexOf((byte)0);
                var afterLang = rest[(lang + 1)..];
                int translated = afterLang.IndexOf((byte)0);
                result[Encoding.Latin1.GetString(data[..zero])] = Encoding.UTF8.GetString(afterLang[(translated + 1)..]);
            }
            if (type == "IEND") break;
            p += 12 + length;
        }
        return result;
    }

    static bool IsLatin1(string s) => s.All(c => c <= 0xFF);

    static void WriteChunk(Stream s, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var typeBytes = Encoding.ASCII.GetBytes(type);
        s.Write(typeBytes);
        s.Write(data);
        var crc = new Crc32();
        crc.Append(typeBytes);
        crc.Append(data);
        Span<byte> c = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(c, crc.GetCurrentHashAsUInt32());
        s.Write(c);
    }
}
