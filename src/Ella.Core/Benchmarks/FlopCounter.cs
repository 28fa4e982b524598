using Ella.Configs;

namespace Ella.Benchmarks;

/// <summary>
/// Analytic forward FLOPs of the models, from their configs and input sizes, by walking the same block structure the
/// modules build. Counted: every convolution, linear layer and the two attention matmuls (QKᵀ and attention·V), at
/// 2 FLOPs per multiply-add. Not counted: normalisations, activations, softmax, additions (memory-bound, a few percent
/// of the time and well under 1 % of the FLOPs). These are the FLOPs a perfect kernel would have to do, so
/// FLOPs ÷ the machine's measured peak is the stage's compute limit.
/// </summary>
public static class FlopCounter
{
    static double Conv(long batch, long outH, long outW, long cin, long cout, int kernel) => 2.0 * batch * outH * outW * cin * cout * kernel * kernel;
    static double Linear(long rows, long din, long dout) => 2.0 * rows * din * dout;
    /// <summary>QKᵀ and attention·V over all heads: inner = heads × head dim.</summary>
    static double AttentionCore(long batch, long lq, long lk, long inner) => 2 * 2.0 * batch * lq * lk * inner;

    /// <summary>One UNet forward on <paramref name="batch"/> rows of <paramref name="latentH"/>×<paramref name="latentW"/> latents with a <paramref name="contextLength"/>-token condition.</summary>
    public static double UNet(UNet2DConditionConfig c, long batch, long latentH, long latentW, long contextLength)
    {
        var ch = c.BlockOutChannels;
        int n = ch.Length;
        var tLayers = c.TransformerLayers();
        int temb = ch[0] * 4;
        double flops = 0;

        flops += Linear(batch, ch[0], temb) + Linear(batch, temb, temb); // time embedding
        flops += Conv(batch, latentH, latentW, c.InChannels, ch[0], c.ConvInKernel);

        double Resnet(long cin, long cout, long h, long w) =>
            Conv(batch, h, w, cin, cout, 3) + Linear(batch, temb, cout) + Conv(batch, h, w, cout, cout, 3)
            + (cin != cout ? Conv(batch, h, w, cin, cout, 1) : 0);
        double Transformer(long channels, long h, long w, int layers)
        {
            long tokens = batch * h * w, hw = h * w;
            double f = 2 * Linear(tokens, channels, channels); // proj_in, proj_out (1×1 conv or linear)
            for (int l = 0; l < layers; l++)
            {
                f += 4 * Linear(tokens, channels, channels) + AttentionCore(batch, hw, hw, channels);           // attn1
                f += 2 * Linear(tokens, channels, channels) + 2 * Linear(batch * contextLength, c.CrossAttentionDim, channels)
                     + AttentionCore(batch, hw, contextLength, channels);                                     // attn2
                f += Linear(tokens, channels, 8 * channels) + Linear(tokens, 4 * channels, channels);          // GEGLU ff
            }
            return f;
        }

        long hh = latentH, ww = latentW;
        var skips = new Stack<(long Channels, long H, long W)>();
        skips.Push((ch[0], hh, ww));
        long current = ch[0];
        for (int i = 0; i < n; i++)
        {
            bool cross = c.DownBlockTypes[i] == "CrossAttnDownBlock2D";
            for (int l = 0; l < c.LayersPerBlock; l++)
            {
                flops += Resnet(current, ch[i], hh, ww);
                current = ch[i];
                if (cross) flops += Transformer(current, hh, ww, tLayers[i]);
                skips.Push((current, hh, ww));
            }
            if (i < n - 1)
            {
                long oh = (hh + 2 * c.DownsamplePadding - 3) / 2 + 1, ow = (ww + 2 * c.DownsamplePadding - 3) / 2 + 1;
                flops += Conv(batch, oh, ow, current, current, 3);
                hh = oh;
                ww = ow;
                skips.Push((current, hh, ww));
            }
        }
        flops += 2 * Resnet(current, current, hh, ww) + Transformer(current, hh, ww, tLayers[^1]); // mid block

        var rch = ch.Reverse().ToArray();
        var rlayers = tLayers.Reverse().ToArray();
        for (int i = 0; i < n; i++)
        {
            bool cross = c.UpBlockTypes[i] == "CrossAttnUpBlock2D";
            for (int l = 0; l < c.LayersPerBlock + 1; l++)
            {
                var skip = skips.Pop();
                flops += Resnet(current + skip.Channels, rch[i], hh, ww);
                current = rch[i];
                if (cross) flops += Transformer(current, hh, ww, rlayers[i]);
            }
            if (i < n - 1)
            {
                var next = skips.Peek();
                hh = next.H;
                ww = next.W;
                flops += Conv(batch, hh, ww, current, current, 3);
            }
        }
        flops += Conv(batch, hh, ww, ch[0], c.OutChannels, c.ConvOutKernel);
        return flops;
    }

    /// <summary>VAE decode of <paramref name="batch"/> latents of <paramref name="latentH"/>×<paramref name="latentW"/>.</summary>
    public static double VaeDecode(AutoencoderKLConfig c, long batch, long latentH, long latentW)
    {
        var rch = c.BlockOutChannels.Reverse().ToArray();
        long hh = latentH, ww = latentW;
        double flops = 0;
        double Resnet(long cin, long cout) =>
            Conv(batch, hh, ww, cin, cout, 3) + Conv(batch, hh, ww, cout, cout, 3) + (cin != cout ? Conv(batch, hh, ww, cin, cout, 1) : 0);
        if (c.UsePostQuantConv) flops += Conv(batch, hh, ww, c.LatentChannels, c.LatentChannels, 1);
        flops += Conv(batch, hh, ww, c.LatentChannels, rch[0], 3);
        // mid block: resnet, single-head self-attention over the h·w positions, resnet
        flops += 2 * Resnet(rch[0], rch[0]);
        if (c.MidBlockAddAttention)
            flops += 4 * Linear(batch * hh * ww, rch[0], rch[0]) + AttentionCore(batch, hh * ww, hh * ww, rch[0]);
        long current = rch[0];
        for (int i = 0; i < rch.Length; i++)
        {
            for (int l = 0; l < c.LayersPerBlock + 1; l++)
            {
                flops += Resnet(current, rch[i]);
                current = rch[i];
            }
            if (i < rch.Length - 1)
            {
                hh *= 2;
                ww *= 2;
                flops += Conv(batch, hh, ww, current, current, 3);
            }
        }
        flops += Conv(batch, hh, ww, current, c.OutChannels, 3);
        return flops;
    }

    /// <summary>T5 encoder on <paramref name="batch"/> sequences of <paramref name="tokens"/> tokens.</summary>
    public static double T5Encoder(T5Config c, long batch, long tokens)
    {
        long rows = batch * tokens, inner = (long)c.NumHeads * c.DKv;
        double perLayer = 3 * Linear(rows, c.DModel, inner) + Linear(rows, inner, c.DModel) + AttentionCore(batch, tokens, tokens, inner)
                          + (c.IsGatedAct ? 2 : 1) * Linear(rows, c.DModel, c.DFf) + Linear(rows, c.DFf, c.DModel);
        return c.NumLayers * perLayer;
    }

    /// <summary>One ELLA connector (TSC) forward: <paramref name="batch"/> rows of <paramref name="tokens"/> text features.</summary>
    public static double Tsc(EllaConnectorConfig c, long batch, long tokens)
    {
        long w = c.Width, te = c.TimeEmbedDim, n = c.NumLatents, kv = n + tokens;
        double flops = Linear(batch, c.TimeChannel, te) + Linear(batch, te, c.OutDim ?? te);
        flops += Linear(batch, te, w);                                      // time_aware_linear
        if (c.InputDim is { } d) flops += Linear(batch * tokens, d, w);       // proj_in
        double perBlock = 3 * Linear(batch, te, 2 * w)                      // three AdaLayerNorm linears
                          + Linear(batch * n, w, w) + Linear(batch * kv, w, 2 * w) + AttentionCore(batch, n, kv, w) + Linear(batch * n, w, w)
                          + Linear(batch * n, w, 4 * w) + Linear(batch * n, 4 * w, w);
        flops += c.Layers * perBlock;
        if (c.OutputDim is { } o) flops += Linear(batch * n, w, o);
        return flops;
    }
}
