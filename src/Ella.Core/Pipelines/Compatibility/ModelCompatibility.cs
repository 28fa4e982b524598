namespace Ella.Pipelines.Compatibility;

/// <summary>
/// Checks that the models a pipeline is about to load fit together, from configs and safetensors headers only, before
/// anything heavy runs (no weights read, no T5 pass, no denoising step). Each mismatch is one line that names both
/// files, both numbers and what would fit; it is thrown as an <see cref="EllaException"/> (exit code 2).
/// </summary>
public static class ModelCompatibility
{
    /// <summary>Reads the facts of every model <paramref name="options"/> names and checks every pairing.</summary>
    public static void Check(PipelineLoadOptions options)
    {
        var problems = Problems(ModelFacts.Read(options), options.LoadClip);
        if (problems.Count > 0) throw new EllaException(problems[0]);
    }

    /// <summary>Every mismatch among <paramref name="f"/>, most fundamental first (one line each).</summary>
    public static List<string> Problems(ModelFacts f, bool usesClip)
    {
        var problems = new List<string>();
        // Text encoder width vs the connector's input.
        if (f.T5DModel is { } t5 && f.ConnectorInputDim is { } input && t5.Value != input.Value)
            problems.Add($"{input.Source}: this connector expects {input.Value}-wide text features{As(KnownModels.T5(input.Value))}; " +
                         $"{f.T5Name ?? t5.Source} ({t5.Source}) produces {t5.Value} (d_model){Suggest(KnownModels.T5(input.Value), "use")}");
        // T5 tokenizer ids vs the T5 embedding table.
        if (f.T5TokenizerVocab is { } tv && f.T5VocabSize is { } vs && tv.Value > vs.Value)
            problems.Add($"{tv.Source}: the T5 tokenizer has {tv.Value} ids but {vs.Source} has vocab_size {vs.Value}; the tokenizer and the encoder come from different models");
        // Connector width vs the UNet's cross-attention.
        if (f.ConnectorOutputWidth is { } width && f.UnetCrossAttentionDim is { } cross && width.Value != cross.Value)
            problems.Add($"{width.Source}: this connector outputs {width.Value}-wide tokens{As(KnownModels.UNet(width.Value), " for ")}; " +
                         $"{cross.Source} has cross_attention_dim {cross.Value}{As(KnownModels.UNet(cross.Value))}: the connector does not belong to this Stable Diffusion model");
        // CLIP width vs the UNet's cross-attention (clip and ella+clip modes).
        if (usesClip && f.ClipHiddenSize is { } clip && f.UnetCrossAttentionDim is { } cross2 && clip.Value != cross2.Value)
            problems.Add($"{clip.Source}: the CLIP text encoder is {clip.Value} wide ({clip.Key}) but {cross2.Source} has cross_attention_dim {cross2.Value}; " +
                         $"--mode clip and ella+clip need a text encoder of width {cross2.Value}{As(KnownModels.Clip(cross2.Value), ", ")}");
        if (usesClip && f.ClipTokenizerVocab is { } ctv && f.ClipVocabSize is { } cvs && ctv.Value > cvs.Value)
            problems.Add($"{ctv.Source}: the CLIP tokenizer has {ctv.Value} tokens but {cvs.Source} has vocab_size {cvs.Value}; the tokenizer and the text encoder come from different models");
        if (usesClip && f.ClipTokenizerMaxLength is { } cml && f.ClipMaxPositions is { } cmp && cml.Value > cmp.Value)
            problems.Add($"{cml.Source}: the CLIP tokenizer pads to {cml.Value} tokens but {cmp.Source} has max_position_embeddings {cmp.Value}");
        // VAE latents vs the UNet's input and output.
        if (f.VaeLatentChannels is { } latent && f.UnetInChannels is { } inCh && inCh.Value != latent.Value && inCh.Value != 2 * latent.Value + 1)
            problems.Add($"{latent.Source}: the VAE has latent_channels {latent.Value} but {inCh.Source} has in_channels {inCh.Value}; " +
                         $"a UNet for this VAE takes {latent.Value} (or {2 * latent.Value + 1} for inpainting)");
        if (f.VaeLatentChannels is { } latent2 && f.UnetOutChannels is { } outCh && outCh.Value != latent2.Value)
            problems.Add($"{latent2.Source}: the VAE has latent_channels {latent2.Value} but {outCh.Source} has out_channels {outCh.Value}; they must be equal");
        return problems;
    }

    /// <summary>
    /// A ControlNet (diffusers <c>config.json</c>) against the UNet it steers: same cross_attention_dim, in_channels and
    /// block_out_channels. Returns the mismatches, one line each.
    /// </summary>
    public static List<string> ControlNetProblems(string controlNetConfig, Configs.UNet2DConditionConfig unet, string unetSource)
    {
        var problems = new List<string>();
        System.Text.Json.JsonElement root;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(controlNetConfig));
            root = doc.RootElement.Clone();
        }
        catch (System.Text.Json.JsonException e) { throw new EllaException($"{controlNetConfig}: not valid JSON ({e.Message})", e); }
        int? Int(string key) => root.ValueKind == System.Text.Json.JsonValueKind.Object && root.TryGetProperty(key, out var v) && v.TryGetInt32(out int i) ? i : null;
        if (Int("cross_attention_dim") is { } cross && cross != unet.CrossAttentionDim)
            problems.Add($"{controlNetConfig}: the ControlNet has cross_attention_dim {cross} but {unetSource} has {unet.CrossAttentionDim}; it was trained for another base model");
        if (Int("in_channels") is { } inCh && inCh != unet.InChannels && !(unet.InChannels == 2 * inCh + 1))
            problems.Add($"{controlNetConfig}: the ControlNet has in_channels {inCh} but {unetSource} has {unet.InChannels}");
        if (root.ValueKind == System.Text.Json.JsonValueKind.Object && root.TryGetProperty("block_out_channels", out var b) && b.ValueKind == System.Text.Json.JsonValueKind.Array)
        {
            var channels = b.EnumerateArray().Select(x => x.TryGetInt32(out int c) ? c : -1).ToArray();
            if (!channels.SequenceEqual(unet.BlockOutChannels))
                problems.Add($"{controlNetConfig}: the ControlNet has block_out_channels [{string.Join(", ", channels)}] but {unetSource} has [{string.Join(", ", unet.BlockOutChannels)}]; their residuals cannot be added");
        }
        return problems;
    }

    static string As(string? name, string prefix = ", as ") => name == null ? "" : prefix == ", as " ? $", as {name} produces" : $"{prefix}{name}";
    static string Suggest(string? name, string verb) => name == null ? "" : $"; {verb} {name}";
}

/// <summary>Public models by the width they produce or expect (for "what would fit" in messages).</summary>
public static class KnownModels
{
    public static string? T5(int dModel) => dModel switch
    {
        512 => "FLAN-T5-small (google/flan-t5-small)",
        768 => "FLAN-T5-base (google/flan-t5-base)",
        1024 => "FLAN-T5-large (google/flan-t5-large)",
        2048 => "FLAN-T5-XL (google/flan-t5-xl)",
        4096 => "FLAN-T5-XXL (google/flan-t5-xxl)",
        _ => null,
    };

    public static string? UNet(int crossAttentionDim) => crossAttentionDim switch
    {
        768 => "Stable Diffusion 1.x",
        1024 => "Stable Diffusion 2.x",
        2048 => "SDXL",
        _ => null,
    };

    public static string? Clip(int hiddenSize) => hiddenSize switch
    {
        768 => "as SD1.x's CLIP ViT-L/14 text encoder",
        1024 => "as SD2.x's OpenCLIP ViT-H/14 text encoder",
        _ => null,
    };
}

/// <summary>Checks of a loaded pipeline against what a request asks of it.</summary>
public static class RequestCompatibility
{
    /// <summary>Text-to-image draws noise with the VAE's latent channels: an inpainting UNet (2·latent+1 inputs) cannot run it.</summary>
    public static void CheckTextToImage(StableDiffusionModel sd, string sdPath)
    {
        int inCh = sd.Unet.Config.InChannels, latent = sd.Vae.Config.LatentChannels;
        bool folder = Directory.Exists(sdPath);
        string unet = folder ? Path.Combine(sdPath, "unet") : sdPath, vae = folder ? Path.Combine(sdPath, "vae") : sdPath;
        if (inCh != latent)
            throw new EllaException($"{unet}: the UNet takes in_channels {inCh} (an inpainting UNet: latents + mask + masked image) but text-to-image gives it the {latent} latent_channels of {vae}; use a text-to-image UNet (in_channels {latent})");
    }
}
