using Ella.Imaging;
using OpenCvSharp;

namespace Ella.Pipelines.ControlNet;

/// <summary>
/// Control-image preprocessors (<c>--control-preprocess</c>): <c>none</c> passes the image through; <c>canny</c> is
/// the ControlNet authors' Canny annotator, OpenCV's <c>Canny(image, 100, 200)</c> on the RGB image, edges white on
/// black in all three channels (OpenCvSharp4 with its official linux-x64 runtime).
/// </summary>
public static class ControlPreprocessor
{
    public static readonly string[] Names = ["none", "canny"];

    public static RgbImage Apply(string name, RgbImage image, double low = 100, double high = 200) => name switch
    {
        "none" => image,
        "canny" => Canny(image, low, high),
        _ => throw new EllaException($"--control-preprocess {name}: unknown preprocessor ({string.Join(", ", Names)})"),
    };

    public static RgbImage Canny(RgbImage image, double low = 100, double high = 200)
    {
        using var src = Mat.FromPixelData(image.Height, image.Width, MatType.CV_8UC3, image.Pixels);
        using var edges = new Mat();
        Cv2.Canny(src, edges, low, high);
        var result = new RgbImage(image.Width, image.Height);
        edges.GetArray(out byte[] values);
        for (int i = 0; i < values.Length; i++) result.Pixels[3 * i] = result.Pixels[3 * i + 1] = result.Pixels[3 * i + 2] = values[i];
        return result;
    }
}
