using Ella.Pipelines;
using Ella.Server.Jobs;
using Ella.Server.Tools;

namespace Ella.Server.Api;

/// <summary>
/// The OpenAI Images API: <c>POST /v1/images/generations</c> and <c>GET /v1/models</c>. Standard fields: prompt, n,
/// size ("WxH"), response_format (b64_json, the default, or url), model (any name: one model is loaded). Extensions:
/// negative_prompt, steps, guidance_scale, seed, scheduler (ours or A1111's sampler names), mode (ella|clip|ella+clip),
/// loras (names in --lora-dir), and init_image / mask (base64; white = repaint) / strength for img2img and inpainting.
/// <c>POST /v1/images/edits</c> is in <see cref="OpenAiImageEditsApi"/>.
/// </summary>
public static class OpenAiImagesApi
{
    public static void Map(WebApplication app, ServerContext s)
    {
        app.MapPost("/v1/images/generations", Http.Handle(ctx => Generate(s, ctx)));
        app.MapGet("/v1/models", Http.Handle(ctx => ctx.Response.WriteAsJsonAsync(new { @object = "list", data = new[] { Model(s) } }, Http.Json)));
        app.MapGet("/v1/models/{id}", Http.Handle(ctx =>
            (string?)ctx.Request.RouteValues["id"] == s.Options.ModelId
                ? ctx.Response.WriteAsJsonAsync(Model(s), Http.Json)
                : throw new ApiError(404, $"model '{ctx.Request.RouteValues["id"]}' not found; this server has '{s.Options.ModelId}'", "model", "model_not_found")));
    }

    static object Model(ServerContext s)
    {
        var p = s.Queue.Pipeline;
        var modes = new List<string>();
        if (p == null || p.Connector != null) modes.Add("ella");
        if (p?.StableDiffusion.TextEncoder != null) modes.AddRange(["clip", "ella+clip"]);
        var d = s.Options.Defaults;
        return new
        {
            id = s.Options.ModelId, @object = "model", created = s.Started.ToUnixTimeSeconds(), owned_by = "ellasharp",
            ready = s.Queue.IsReady, modes, schedulers = Ella.Schedulers.SchedulerFactory.Names,
            defaults = new { steps = d.Steps, guidance_scale = d.GuidanceScale, scheduler = d.Scheduler, mode = GenerationModes.Name(d.Mode), size = $"{d.Width}x{d.Height}", negative_prompt = d.NegativePrompt },
            limits = new { max_pixels = s.Options.MaxPixels, max_n = ImageSpec.MaxCount, max_steps = ImageSpec.MaxSteps, max_prompt_chars = s.Options.MaxPromptChars, max_queue = s.Options.MaxQueue },
        };
    }

    static async Task Generate(ServerContext s, HttpContext ctx)
    {
        var fields = await JsonFields.ReadAsync(ctx.Request, ctx.RequestAborted);
        var spec = Parse(fields, s.Options, "b64_json");
        spec.Check(s.Options, s.Queue.Pipeline, imageParam: "init_image");
        await Respond(s, ctx, spec, "openai");
    }

    /// <summary>Runs a checked spec as a job the request owns and writes OpenAI's images response.</summary>
    public static async Task Respond(ServerContext s, HttpContext ctx, ImageSpec spec, string api)
    {
        var job = s.NewJob(spec, api, ctx);
        s.Queue.Submit(job);
        ctx.Response.Headers["X-Ella-Job-Id"] = job.Id;
        await Http.AwaitOwnedJob(ctx, job);
        var r = job.Result!;
        await ctx.Response.WriteAsJsonAsync(new
        {
            created = job.Created.ToUnixTimeSeconds(),
            data = r.Images.Select(job.DataItem).ToList(),
            job_id = job.Id, seed = r.Seed, scheduler = r.SchedulerName, warnings = r.Warnings,
        }, Http.Json);
    }

    /// <summary>The OpenAI request body (also the body of POST /v1/jobs).</summary>
    public static ImageSpec Parse(JsonFields f, ServerOptions o, string defaultFormat)
    {
        var d = o.Defaults;
        string prompt = f.String("prompt", o.MaxPromptChars) ?? throw ApiError.BadRequest("'prompt' is required", "prompt", "missing_required_parameter");
        f.String("model");
        int n = (int)(f.Integer("n", 1, ImageSpec.MaxCount) ?? 1);
        var (w, h) = ParseSize(f.String("size"), d.Width, d.Height);
        string format = f.String("response_format") ?? defaultFormat;
        if (format is not ("b64_json" or "url")) throw ApiError.BadRequest($"unknown response_format '{format}' (b64_json, url)", "response_format");
        long? seed = f.Integer("seed", -1, (1L << 53) - 1);
        var init = f.String("init_image") is { } i ? RequestImages.FromBase64(i, "init_image", o.MaxPixels).Image : null;
        var mask = f.String("mask") is { } m ? RequestImages.FromBase64(m, "mask", o.MaxPixels).Image : null;
        if (init != null && !f.Has("size")) (w, h) = RequestImages.SizeOf(init, "init_image");
        return new ImageSpec
        {
            Prompt = prompt,
            NegativePrompt = f.String("negative_prompt", o.MaxPromptChars) ?? d.NegativePrompt,
            Count = n, Width = w, Height = h,
            Steps = (int)(f.Integer("steps", 1, ImageSpec.MaxSteps) ?? d.Steps),
            GuidanceScale = f.Number("guidance_scale", 0, ImageSpec.MaxGuidance) ?? d.GuidanceScale,
            Seed = seed is null or -1 ? null : seed,
            Scheduler = ImageSpec.ParseScheduler(f.String("scheduler"), d.Scheduler, "scheduler"),
            Mode = ImageSpec.ParseMode(f.String("mode"), d.Mode),
            ResponseFormat = format,
            InitImage = init, Mask = mask, Strength = f.Number("strength", 0, 1),
            Loras = RequestLoras.Parse(f, d.LoraDirectory),
        };
    }

    static (int W, int H) ParseSize(string? size, int defaultWidth, int defaultHeight)
    {
        if (size == null || size == "auto") return (defaultWidth, defaultHeight);
        var parts = size.ToLowerInvariant().Split('x');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int w) || !int.TryParse(parts[1], out int h))
            throw ApiError.BadRequest($"size '{size}' must look like \"512x512\" (width x height)", "size");
        return (w, h);
    }
}
