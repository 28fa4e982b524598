using System.CommandLine;
using Ella.Imaging;

namespace Ella.Cli.Commands;

/// <summary><c>--upscale N</c> of <c>generate</c> and <c>compare</c>: the saved PNG is N× larger, nearest neighbour (the
/// shapes world's 64×64 images are small to look at; nearest neighbour keeps their pixels exact).</summary>
public sealed class UpscaleCliOption
{
    public readonly Option<int> Factor = new("--upscale") { Description = "Save the image N× larger (nearest neighbour; integer ≥ 1)", DefaultValueFactory = _ => 1 };

    public void AddTo(Command command) => command.Options.Add(Factor);

    /// <summary>The factor, checked against the size of the images it enlarges (before anything is loaded).</summary>
    public int Validated(ParseResult p, int width, int height)
    {
        int n = p.GetValue(Factor);
        if (n < 1) throw new EllaException($"--upscale must be an integer ≥ 1, got {n}");
        if (n > 1 && (long)width * n * ((long)height * n) > RgbImage.DefaultMaxPixels)
            throw new EllaException($"--upscale {n}: a {width}×{height} image would become {(long)width * n}×{(long)height * n}, more than {RgbImage.DefaultMaxPixels:N0} pixels");
        return n;
    }
}
