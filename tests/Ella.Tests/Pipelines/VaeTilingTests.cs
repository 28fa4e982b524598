using Ella.Modules.Vae;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Ella.Tests.Pipelines;

public class VaeTilingTests
{
    [Fact]
    public void Tiled_decoding_matches_plain_decoding_where_tiles_agree()
    {
        using var vae = AutoencoderKL.FromPretrained(Fixtures.PathOf("diffusion", "vae", "model"));
        using var _ = inference_mode();
        using var z = randn(1, 4, 8, 8, generator: new Generator(3));
        // One tile covers everything: identical.
        TensorAssert.Close(vae.Decode(z), VaeTiling.Decode(vae, z, tileLatent: 8), "single tile", 0);
        // Several overlapping tiles: the full size, finite, and each output pixel is a blend of the tiles covering it:
        // where only the first tile covers (top-left, before any overlap), it equals that tile's own decode.
        using var big = randn(1, 4, 12, 20, generator: new Generator(4));
        using var plain = vae.Decode(big);
        using var tiled = VaeTiling.Decode(vae, big, tileLatent: 8, overlap: 0.25);
        Assert.Equal(plain.shape, tiled.shape);
        Assert.False(tiled.isnan().any().item<bool>());
        using var firstTile = vae.Decode(big[.., .., ..8, ..8]);
        TensorAssert.Close(firstTile[.., .., ..48, ..48], tiled[.., .., ..48, ..48], "first tile before the overlap", 1e-5);
    }
}
