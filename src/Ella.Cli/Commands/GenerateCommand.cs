using System.CommandLine;
using Ella.Imaging;
using Ella.Pipelines;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.Cli.Commands;

/// <summary><c>ella generate</c>: text (or precomputed text features) to PNG.</summary>
public static class GenerateCommand
{
    public static Command Create(CliContext ctx)
    {
        var o = new PipelineCliOptions();
        var tools = new ToolCliOptions();
        var upscale = new UpscaleCliOption();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "The prompt" };
        var promptFile = new Option<string?>("--prompt-file") { Description = "Read the prompt from a text file" };
        var negative = new Option<string>("--negative-prompt") { Description = "Negative prompt (default: empty)", DefaultValueFactory = _ => "" };
        var batch = new Option<int>("--batch", "-b") { Description = "Images to generate (one generator draws the [N,4,h,w] noise)", DefaultValueFactory = _ => 1 };
        var output = new Option<string?>("--output", "-o") { Description = "PNG path; with --batch N files are <stem>-0.png … (default: ella-<seed>.png)" };
        var embeds = new Option<string?>("--prompt-embeds") { Description = "safetensors with prompt_embeds [B,L,D] (and negative_prompt_embeds) used instead of T5" };
        var command = new Command("generate", "Generate images from a prompt with ELLA (or SD1.5's CLIP)") { prompt, promptFile, negative, batch, output, embeds };
        o.AddTo(command);
        tools.AddTo(command);
        upscale.AddTo(command);
        command.SetAction(p => Run(ctx, o, tools, upscale, p, p.GetValue(prompt), p.GetValue(promptFile), p.GetValue(negative)!, p.GetValue(batch), p.GetValue(output), p.GetValue(embeds)));
        return command;
    }

    /// <summary>The output file of each image: the path itself for one image, else &lt;stem&gt;-i.png.</summary>
    static List<string> OutputPaths(string basePath, int n) => n == 1 ? [basePath]
        : Enumerable.Range(0, n).Select(i => Path.Combine(Path.GetDirectoryName(basePath) ?? "", $"{Path.GetFileNameWithoutExtension(basePath)}-{i}{(Path.HasExtension(basePath) ? Path.GetExtension(basePath) : ".png")}")).ToList();

    static int Run(CliContext ctx, PipelineCliOptions o, ToolCliOptions tools, UpscaleCliOption upscale, ParseResult p, string? prompt, string? promptFile, string negative, int batch, string? output, string? embedsPath)
    {
        if (prompt != null && promptFile != null) throw new EllaException("give --prompt or --prompt-file, not both");
        if (promptFile != null)
        {
            prompt = Robustness.PromptFiles.Read(promptFile);
        }
        if (prompt == null && embedsPath == null) throw new EllaException("a prompt is required: --prompt TEXT or --prompt-file FILE");
        var mode = GenerationModes.Parse(p.GetValue(o.Mode)!);
        if (batch < 1 || batch > 4096) throw new EllaException($"--batch must be between 1 and 4096, got {batch}");
        if (p.GetValue(upscale.Factor) < 1) upscale.Validated(p, 1, 1); // a bad factor fails before anything is loaded
        long seed = Robustness.Seeds.Given(p.GetValue(o.Seed)) ?? Robustness.Seeds.Random();
        var paths = OutputPaths(output ?? $"ella-{Robustness.Seeds.Format(seed)}.png", batch);
        Robustness.OutputFiles.Prepare(paths, p.GetValue(o.NoOverwrite));
        var load = o.LoadOptions(p, [mode], needT5: embedsPath == null, oneShot: true);
        var toolRequest = tools.Apply(p, o.Request(p, [], negative), o);
        int factor = upscale.Validated(p, toolRequest.Width, toolRequest.Height);

        Tensor? promptEmbeds = null, negativeEmbeds = null;
        if (embedsPath != null)
        {
            using var f = Checkpoint.Open(embedsPath);
            if (!f.Contains("prompt_embeds")) throw new EllaException($"{embedsPath}: no tensor named 'prompt_embeds'");
            promptEmbeds = f.Read("prompt_embeds", ScalarType.Float32);
            if (f.Contains("negative_prompt_embeds")) negativeEmbeds = f.Read("negative_prompt_embeds", ScalarType.Float32);
        }

        using var pipeline = EllaPipeline.Load(load, m => ctx.Error.WriteLine(m));
        var request = toolRequest with
        {
            Prompts = prompt != null ? [Text.PromptText.Clean(prompt)] : [],
            BatchSize = batch, PromptEmbeds = promptEmbeds, NegativePromptEmbeds = negativeEmbeds, Seed = seed,
        };
        pipeline.Validate(request);
        var progress = new StepProgressReporter(ctx.Error, StepProgressReporter.IsInteractive(ctx.Error));
        try
        {
            using var result = pipeline.Generate(request, progress, ctx.Interrupt);
            foreach (var w in result.Warnings) ctx.Error.WriteLine($"warning: {w}");
            int n = (int)result.Images.shape[0];
            for (int i = 0; i < n; i++)
            {
                string path = paths[i];
                var image = RgbImage.FromTensor(result.Images[i]).UpscaleNearest(factor);
                image.SavePng(path, new Dictionary<string, string> { ["parameters"] = PipelineCliOptions.Parameters(pipeline, request, result, request.Prompts.Count > 0 ? request.Prompts[0] : "(prompt embeddings)", i, p.GetValue(o.DType)!, factor) });
                ctx.Out.WriteLine(path);
            }
            ctx.Error.WriteLine($"seed {Robustness.Seeds.Format(result.Seed)}; encode {result.EncodeTime.TotalSeconds:F1} s, denoise {result.DenoiseTime.TotalSeconds:F1} s ({result.DenoiseTime.TotalSeconds / request.Steps:F2} s/step), decode {result.DecodeTime.TotalSeconds:F1} s");
            return EllaCli.ExitOk;
        }
        finally
        {
            promptEmbeds?.Dispose();
            negativeEmbeds?.Dispose();
        }
    }
}
