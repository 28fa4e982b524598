using Ella.Imaging;
using Ella.Server.Api;

namespace Ella.Server.Tools;

/// <summary>
/// Images that arrive in requests (base64 fields of the Automatic1111 API, multipart uploads of the OpenAI API),
/// decoded with the same limits as the CLI's files: a bad image is a 400 that names the field, never a 500.
/// </summary>
public static class RequestImages
{
    /// <summary>A base64 image, with or without a <c>data:image/…;base64,</c> prefix (what browsers and A1111 clients send).</summary>
    public static (RgbImage Image, byte[]? Alpha) FromBase64(string value, string field, long maxPixels)
    {
        string data = value.Trim();
        if (data.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            int comma = data.IndexOf(',');
            if (comma < 0 || !data[..comma].EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
                throw ApiError.BadRequest($"'{field}' is a data URL without ';base64,'", field, "invalid_image");
            data = data[(comma + 1)..];
        }
        byte[] bytes;
        try { bytes = Convert.FromBase64String(data); }
        catch (FormatException) { throw ApiError.BadRequest($"'{field}' is not valid base64", field, "invalid_image"); }
        return Decode(bytes, field, maxPixels);
    }

    /// <summary>A multipart upload.</summary>
    public static async Task<(RgbImage Image, byte[]? Alpha)> FromUploadAsync(IFormFile file, string field, long maxPixels, CancellationToken cancellation)
    {
        using var buffer = new MemoryStream();
        await file.CopyToAsync(buffer, cancellation);
        return Decode(buffer.ToArray(), field, maxPixels);
    }

    static (RgbImage Image, byte[]? Alpha) Decode(byte[] bytes, string field, long maxPixels)
    {
        try { return RgbImage.Decode(bytes, $"'{field}'", maxPixels); }
        catch (EllaException e) { throw ApiError.BadRequest(e.Message, field, "invalid_image"); }
    }

    /// <summary>
    /// OpenAI's mask convention, where the <b>transparent</b> pixels are the ones to edit, as our mask (white = repaint):
    /// 255 − alpha, which the pipeline binarises at one half.
    /// </summary>
    public static RgbImage MaskFromAlpha(byte[] alpha, int width, int height)
    {
        var mask = new RgbImage(width, height);
        for (int i = 0; i < alpha.Length; i++)
            mask.Pixels[3 * i] = mask.Pixels[3 * i + 1] = mask.Pixels[3 * i + 2] = (byte)(255 - alpha[i]);
        return mask;
    }

    /// <summary>A1111's <c>inpainting_mask_invert</c>: black becomes the part to repaint.</summary>
    public static RgbImage Invert(RgbImage mask)
    {
        var inverted = new RgbImage(mask.Width, mask.Height);
        for (int i = 0; i < mask.Pixels.Length; i++) inverted.Pixels[i] = (byte)(255 - mask.Pixels[i]);
        return inverted;
    }

    /// <summary>The generation size an init image implies when the request gives none: its size rounded down to a multiple of 8.</summary>
    public static (int Width, int Height) SizeOf(RgbImage image, string field)
    {
        int w = image.Width / 8 * 8, h = image.Height / 8 * 8;
        if (w == 0 || h == 0) throw ApiError.BadRequest($"'{field}' is {image.Width}×{image.Height}: too small (at least 8×8)", field, "invalid_image");
        return (w, h);
    }
}
