using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ella.Server.Jobs;
using Ella.Server.Tools;

namespace Ella.Server.Api;

/// <summary>
/// OpenAI's <c>POST /v1/images/edits</c>: <c>multipart/form-data</c> with <c>image</c> (PNG/JPEG; <c>image[]</c> is read
/// as well, its first file used), an optional <c>mask</c>, <c>prompt</c>, <c>n</c>, <c>size</c>, <c>response_format</c>,
/// <c>model</c>, plus this server's extensions of the generations endpoint (negative_prompt, steps, guidance_scale, seed,
/// scheduler, mode, strength, loras). A JSON body with base64 <c>image</c> and <c>mask</c> works too.
/// <para>OpenAI's mask semantics: the <b>transparent</b> pixels (alpha below one half) are repainted. A mask without an
/// alpha channel is read as EllaSharp's (white = repaint). Without a mask, a transparent area of the image itself is the
/// mask; an opaque image without a mask is img2img (<c>strength</c>, default 0.8). Without <c>size</c> the image's own
/// size, rounded down to a multiple of 8, is used.</para>
/// </summary>
public static class OpenAiImageEditsApi
{
    static readonly string[] NumberFields = ["n", "steps", "guidance_scale", "seed", "strength"];

    public static void Map(WebApplication app, ServerContext s) =>
        app.MapPost("/v1/images/edits", Http.Handle(ctx => Edit(s, ctx)));

    static async Task Edit(ServerContext s, HttpContext ctx)
    {
        JsonFields fields;
        (Imaging.RgbImage Image, byte[]? Alpha)? image = null, mask = null;
        if (ctx.Request.HasFormContentType)
        {
            IFormCollection form;
            try { form = await ctx.Request.ReadFormAsync(ctx.RequestAborted); }
            catch (InvalidDataException e) { throw ApiError.BadRequest($"malformed multipart body: {e.Message}", null, "invalid_multipart"); }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                throw new ApiError(413, "the request body is too large", null, "request_too_large");
            }
            fields = FormFields(form);
            var imageFile = form.Files.GetFile("image") ?? form.Files.GetFile("image[]");
            if (imageFile != null) image = await RequestImages.FromUploadAsync(imageFile, "image", s.Options.MaxPixels, ctx.RequestAborted);
            if (form.Files.GetFile("mask") is { } maskFile) mask = await RequestImages.FromUploadAsync(maskFile, "mask", s.Options.MaxPixels, ctx.RequestAborted);
        }
        else
        {
            fields = await JsonFields.ReadAsync(ctx.Request, ctx.RequestAborted);
            if (fields.String("image") is { } i) image = RequestImages.FromBase64(i, "image", s.Options.MaxPixels);
            if (fields.String("mask") is { } m) mask = RequestImages.FromBase64(m, "mask", s.Options.MaxPixels);
        }
        if (image is not { } img) throw ApiError.BadRequest("'image' is required: the image to edit (PNG or JPEG)", "image", "missing_required_parameter");

        Imaging.RgbImage? repaint = null;
        if (mask is { } mk)
            repaint = mk.Alpha is { } alpha ? RequestImages.MaskFromAlpha(alpha, mk.Image.Width, mk.Image.Height) : mk.Image;
        else if (img.Alpha is { } own && own.Any(a => a < 128))
            repaint = RequestImages.MaskFromAlpha(own, img.Image.Width, img.Image.Height);

        var spec = OpenAiImagesApi.Parse(fields, s.Options, "b64_json") with { InitImage = img.Image, Mask = repaint };
        if (!fields.Has("size"))
        {
            var (w, h) = RequestImages.SizeOf(img.Image, "image");
            spec = spec with { Width = w, Height = h };
        }
        spec.Check(s.Options, s.Queue.Pipeline);
        await OpenAiImagesApi.Respond(s, ctx, spec, "openai-edits");
    }

    /// <summary>The form's text fields as a JSON object, so that they are read (and rejected) exactly as JSON bodies are.</summary>
    static JsonFields FormFields(IFormCollection form)
    {
        var obj = new JsonObject();
        foreach (var (key, values) in form)
        {
            string value = values.ToString();
            if (key == "loras")
                obj[key] = value.TrimStart().StartsWith('[') ? ParseJson(value, key)
                    : new JsonArray(value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v => (JsonNode)JsonValue.Create(v)!).ToArray());
            else if (NumberFields.Contains(key) && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double d))
                obj[key] = JsonValue.Create(d);
            else
                obj[key] = JsonValue.Create(value);
        }
        using var doc = JsonDocument.Parse(obj.ToJsonString());
        return new JsonFields(doc.RootElement.Clone());
    }

    static JsonNode? ParseJson(string value, string key)
    {
        try { return JsonNode.Parse(value); }
        catch (JsonException e) { throw ApiError.BadRequest($"'{key}' is not valid JSON: {e.Message}", key, "invalid_json"); }
    }
}
