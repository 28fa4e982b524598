using Ella.Modules.Vae;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Pipelines;

/// <summary>
/// Tiled VAE decoding with bounded memory: the latents are decoded in overlapping tiles whose overlaps are blended
/// linearly (diffusers' tiled_decode scheme), so memory depends on the tile size, not the image size.
/// </summary>
public static class VaeTiling
{
    /// <param name="tileLatent">tile size in latent pixels (64 → 512-pixel tiles)</param>
    /// <param name="overlap">fraction of a tile that neighbouring tiles share</param>
    public static Tensor Decode(AutoencoderKL vae, Tensor z, int tileLatent = 64, double overlap = 0.25)
    {
        long h = z.shape[2], w = z.shape[3];
        if (h <= tileLatent && w <= tileLatent) return vae.Decode(z);
        int f = vae.Config.DownscaleFactor;
        int stride = (int)(tileLatent * (1 - overlap));
        int blend = (tileLatent - stride) * f;
        using var scope = NewDisposeScope();
        var rows = new List<List<Tensor>>();
        for (long y = 0; y < h; y += stride)
        {
            var row = new List<Tensor>();
            for (long x = 0; x < w; x += stride)
            {
                using var tileScope = NewDisposeScope();
                var tile = z[.., .., (int)y..(int)Math.Min(y + tileLatent, h), (int)x..(int)Math.Min(x + tileLatent, w)];
                row.Add(vae.Decode(tile).MoveToOuterDisposeScope());
                if (x + tileLatent >= w) break;
            }
            rows.Add(row);
            if (y + tileLatent >= h) break;
        }
        var outRows = new List<Tensor>();
        for (int i = 0; i < rows.Count; i++)
        {
            var pieces = new List<Tensor>();
            for (int j = 0; j < rows[i].Count; j++)
            {
                var tile = rows[i][j];
                if (i > 0) tile = BlendVertical(rows[i - 1][j], tile, blend);
                if (j > 0) tile = BlendHorizontal(rows[i][j - 1], tile, blend);
                rows[i][j] = tile;
                long th = i < rows.Count - 1 ? stride * f : tile.shape[2];
                long tw = j < rows[i].Count - 1 ? stride * f : tile.shape[3];
                pieces.Add(tile[.., .., ..(int)th, ..(int)tw]);
            }
            outRows.Add(cat(pieces.ToArray(), 3));
        }
        return cat(outRows.ToArray(), 2).MoveToOuterDisposeScope();
    }

    static Tensor BlendVertical(Tensor above, Tensor below, int extent)
    {
        int n = (int)Math.Min(extent, Math.Min(above.shape[2], below.shape[2]));
        if (n <= 0) return below;
        var weight = arange(n, dtype: below.dtype, device: below.device).div(n).reshape(1, 1, n, 1);
        var top = above[.., .., ^n.., ..];
        var blended = top * (1 - weight) + below[.., .., ..n, ..] * weight;
        return cat([blended, below[.., .., n.., ..]], 2);
    }

    static Tensor BlendHorizontal(Tensor left, Tensor right, int extent)
    {
        int n = (int)Math.Min(extent, Math.Min(left.shape[3], right.shape[3]));
        if (n <= 0) return right;
        var weight = arange(n, dtype: right.dtype, device: right.device).div(n).reshape(1, 1, 1, n);
        var blended = left[.., .., .., ^n..] * (1 - weight) + right[.., .., .., ..n] * weight;
        return cat([blended, right[.., .., .., n..]], 3);
    }
}
