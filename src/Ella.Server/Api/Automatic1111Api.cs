using System.Text.Json;
using Ella.Pipelines;
using Ella.Server.Jobs;
using Ella.Server.Tools;

namespace Ella.Server.Api;

/// <summary>
/// The Automatic1111 web UI API subset that front-ends use (Open WebUI, SillyTavern, Krita plugins):
/// <c>POST /sdapi/v1/txt2img</c>, <c>POST /sdapi/v1/img2img</c> (<c>init_images</c>, <c>mask</c> with white =
/// repaint, <c>inpainting_mask_invert</c>, <c>denoising_strength</c> default 0.75), <c>GET /sdapi/v1/progress</c>,
/// <c>GET /sdapi/v1/sd-models</c>, <c>GET /sdapi/v1/loras</c>, plus <c>/sdapi/v1/samplers</c>, <c>/sdapi/v1/options</c>,
/// <c>POST /sdapi/v1/refresh-loras</c> and <c>POST /sdapi/v1/interrupt</c>. LoRAs come as A1111's prompt tags
/// (<c>&lt;lora:name:0.8&gt;</c>, looked up in --lora-dir) or in a <c>loras</c> field.
/// </summary>
public static class Automatic1111Api
{
    public static void Map(WebApplication app, ServerContext s)
    {
        app.MapPost("/sdapi/v1/txt2img", Http.Handle(ctx => Txt2Img(s, ctx, img2img: false), sdapi: true));
        app.MapPost("/sdapi/v1/img2img", Http.Handle(ctx => Txt2Img(s, ctx, img2img: true), sdapi: true));
        app.MapGet("/sdapi/v1/loras", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(
            RequestLoras.Available(s.Options.Defaults.LoraDirectory).Select(name => new
            {
                name, alias = name, path = Path.Combine(s.Options.Defaults.LoraDirectory!, name + ".safetensors"), metadata = new { },
            }), Http.Json), sdapi: true));
        app.MapPost("/sdapi/v1/refresh-loras", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(new { }, Http.Json), sdapi: true));
        app.MapGet("/sdapi/v1/progress", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(Progress(s), Http.Json), sdapi: true));
        app.MapGet("/sdapi/v1/sd-models", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(new[]
        {
            new { title = s.Options.ModelId, model_name = s.Options.ModelId, hash = (string?)null, sha256 = (string?)null, filename = s.Queue.Pipeline?.StableDiffusion.Name ?? s.Options.ModelId, config = (string?)null },
        }, Http.Json), sdapi: true));
        app.MapGet("/sdapi/v1/samplers", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(
            Samplers.Automatic1111.Select(kv => new { name = kv.Key, aliases = new[] { kv.Value }, options = new { } }), Http.Json), sdapi: true));
        app.MapGet("/sdapi/v1/options", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(new { sd_model_checkpoint = s.Options.ModelId }, Http.Json), sdapi: true));
        app.MapPost("/sdapi/v1/interrupt", Http.Handle(ctx =>
        {
            s.Queue.Running?.Cancel("interrupted (/sdapi/v1/interrupt)");
            return ctx.Response.WriteAsJsonAsync(new { }, Http.Json);
        }, sdapi: true));
    }

    static async Task Txt2Img(ServerContext s, HttpContext ctx, bool img2img)
    {
        var f = await JsonFields.ReadAsync(ctx.Request, ctx.RequestAborted);
        var spec = Parse(f, s.Options);
        if (img2img) spec = WithInitImage(f, s.Options, spec);
        spec.Check(s.Options, s.Queue.Pipeline, sizeParam: "width", heightParam: "height", imageParam: "init_images", strengthParam: "denoising_strength");
        var job = s.NewJob(spec, "sdapi", ctx);
        s.Queue.Submit(job);
        await Http.AwaitOwnedJob(ctx, job);
        var r = job.Result!;
        string sampler = Samplers.Automatic1111Name(spec.Scheduler);
        var parameters = new
        {
            prompt = spec.Prompt, negative_prompt = spec.NegativePrompt, steps = spec.Steps, cfg_scale = spec.GuidanceScale,
            seed = spec.Seed ?? -1, width = spec.Width, height = spec.Height, batch_size = spec.Count, n_iter = 1,
            sampler_name = sampler, mode = GenerationModes.Name(spec.Mode),
        };
        var info = new
        {
            prompt = spec.Prompt, all_prompts = Enumerable.Repeat(spec.Prompt, spec.Count), negative_prompt = spec.NegativePrompt,
            all_negative_prompts = Enumerable.Repeat(spec.NegativePrompt, spec.Count), seed = r.Seed, all_seeds = Enumerable.Repeat(r.Seed, spec.Count),
            subseed = -1, all_subseeds = Enumerable.Repeat(-1, spec.Count), subseed_strength = 0, width = spec.Width, height = spec.Height,
            sampler_name = sampler, cfg_scale = spec.GuidanceScale, steps = spec.Steps, batch_size = spec.Count,
            sd_model_name = s.Options.ModelId, sd_model_hash = (string?)null, seed_resize_from_w = -1, seed_resize_from_h = -1,
            denoising_strength = spec.InitImage != null ? spec.Strength ?? 0 : 0, clip_skip = 1, restore_faces = false,
            is_using_inpainting_conditioning = spec.Mask != null && s.Queue.Pipeline?.StableDiffusion.Unet.Config.InChannels == 9,
            job_timestamp = job.Created.ToString("yyyyMMddHHmmss"), infotexts = r.Images.Select(i => i.Parameters), index_of_first_image = 0,
            version = "EllaSharp", job_id = job.Id,
        };
        await ctx.Response.WriteAsJsonAsync(new
        {
            images = r.Images.Select(i => Convert.ToBase64String(i.Png)),
            parameters,
            info = JsonSerializer.Serialize(info, Http.Json),
        }, Http.Json);
    }

    /// <summary>img2img's fields: the first of <c>init_images</c>, the mask, and the strength (A1111's default 0.75).</summary>
    static ImageSpec WithInitImage(JsonFields f, ServerOptions o, ImageSpec spec)
    {
        if (!f.Root.TryGetProperty("init_images", out var images) || images.ValueKind != JsonValueKind.Array || images.GetArrayLength() == 0)
            throw ApiError.BadRequest("'init_images' is required: a list with one base64 image", "init_images", "missing_required_parameter");
        if (images[0].ValueKind != JsonValueKind.String) throw ApiError.BadRequest("'init_images' must hold base64 strings", "init_images", "invalid_type");
        var init = RequestImages.FromBase64(images[0].GetString()!, "init_images", o.MaxPixels).Image;
        var mask = f.String("mask") is { } m ? RequestImages.FromBase64(m, "mask", o.MaxPixels).Image : null;
        long invert = f.Integer("inpainting_mask_invert", 0, 1) ?? 0;
        if (mask != null && invert == 1) mask = RequestImages.Invert(mask);
        spec = spec with { InitImage = init, Mask = mask, Strength = f.Number("denoising_strength", 0, 1) ?? 0.75 };
        if (!f.Has("width") && !f.Has("height"))
        {
            var (w, h) = RequestImages.SizeOf(init, "init_images");
            spec = spec with { Width = w, Height = h };
        }
        return spec;
    }

    public static ImageSpec Parse(JsonFields f, ServerOptions o)
    {
        var d = o.Defaults;
        string prompt = f.String("prompt", o.MaxPromptChars) ?? throw ApiError.BadRequest("'prompt' is required", "prompt", "missing_required_parameter");
        int batch = (int)(f.Integer("batch_size", 1, ImageSpec.MaxCount) ?? 1);
        int iterations = (int)(f.Integer("n_iter", 1, ImageSpec.MaxCount) ?? 1);
        if (batch * iterations > ImageSpec.MaxCount)
            throw ApiError.BadRequest($"batch_size × n_iter = {batch * iterations} images; at most {ImageSpec.MaxCount} per request", "batch_size");
        long? seed = f.Integer("seed", -1, (1L << 53) - 1);
        return new ImageSpec
        {
            Prompt = prompt,
            NegativePrompt = f.String("negative_prompt", o.MaxPromptChars) ?? d.NegativePrompt,
            Count = batch * iterations,
            Width = (int)(f.Integer("width", 1, 65536) ?? d.Width),
            Height = (int)(f.Integer("height", 1, 65536) ?? d.Height),
            Steps = (int)(f.Integer("steps", 1, ImageSpec.MaxSteps) ?? d.Steps),
            GuidanceScale = f.Number("cfg_scale", 0, ImageSpec.MaxGuidance) ?? d.GuidanceScale,
            Seed = seed is null or -1 ? null : seed,
            Scheduler = ImageSpec.ParseScheduler(f.String("sampler_name") ?? f.String("sampler_index"), d.Scheduler, "sampler_name", f.String("scheduler")),
            Mode = ImageSpec.ParseMode(f.String("mode"), d.Mode),
            Loras = RequestLoras.Parse(f, d.LoraDirectory),
        };
    }

    static object Progress(ServerContext s)
    {
        var job = s.Queue.Running;
        int waiting = s.Queue.WaitingCount;
        double progress = 0, eta = 0;
        if (job is { Step: > 0 } && job.Started is { } started)
        {
            progress = (double)job.Step / job.TotalSteps;
            double elapsed = (DateTimeOffset.UtcNow - started).TotalSeconds;
            eta = elapsed / job.Step * (job.TotalSteps - job.Step);
        }
        return new
        {
            progress = Math.Round(progress, 4), eta_relative = Math.Round(eta, 3),
            state = new
            {
                skipped = false, interrupted = false, job = job?.Id ?? "", job_count = waiting + (job != null ? 1 : 0),
                job_timestamp = job?.Created.ToString("yyyyMMddHHmmss") ?? "0", job_no = 0,
                sampling_step = job?.Step ?? 0, sampling_steps = job?.TotalSteps ?? 0,
            },
            current_image = (string?)null, textinfo = job != null ? $"step {job.Step}/{job.TotalSteps}" : null,
        };
    }
}
