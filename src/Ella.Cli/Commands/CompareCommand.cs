using System.CommandLine;
using Ella.Imaging;
using Ella.Pipelines;
using Ella.Text;

namespace Ella.Cli.Commands;

/// <summary><c>ella compare</c>: SD1.5 (CLIP) | ELLA fixed | ELLA flexible, same seed, one labelled grid.</summary>
public static class CompareCommand
{
    public static Command Create(CliContext ctx)
    {
        var o = new PipelineCliOptions();
        var tools = new ToolCliOptions();
        var upscale = new UpscaleCliOption();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "The prompt" };
        var promptFile = new Option<string?>("--prompt-file") { Description = "Read the prompt from a text file" };
        var negative = new Option<string>("--negative-prompt") { Description = "Negative prompt (default: empty)", DefaultValueFactory = _ => "" };
        var output = new Option<string>("--output", "-o") { Description = "PNG path of the grid", DefaultValueFactory = _ => "compare.png" };
        var command = new Command("compare", "One grid in the authors' order: SD1.5 (CLIP) | ELLA fixed | ELLA flexible, same seed") { prompt, promptFile, negative, output };
        o.AddTo(command);
        tools.AddTo(command);
        upscale.AddTo(command);
        command.SetAction(p => Run(ctx, o, tools, upscale, p, p.GetValue(prompt), p.GetValue(promptFile), p.GetValue(negative)!, p.GetValue(output)!));
        return command;
    }

    static int Run(CliContext ctx, PipelineCliOptions o, ToolCliOptions tools, UpscaleCliOption upscale, ParseResult p, string? prompt, string? promptFile, string negative, string output)
    {
        if (promptFile != null)
        {
            prompt = Robustness.PromptFiles.Read(promptFile);
        }
        prompt = Text.PromptText.Clean(prompt);
        negative = Text.PromptText.Clean(negative);
        if (string.IsNullOrEmpty(prompt)) throw new EllaException("a prompt is required: --prompt TEXT or --prompt-file FILE");
        if (p.GetValue(upscale.Factor) < 1) upscale.Validated(p, 1, 1); // a bad factor fails before anything is loaded
        Robustness.OutputFiles.Prepare([output], p.GetValue(o.NoOverwrite));
        var load = o.LoadOptions(p, [GenerationMode.Clip, GenerationMode.Ella]);
        var toolRequest = tools.Apply(p, o.Request(p, [prompt], negative), o);
        int factor = upscale.Validated(p, toolRequest.Width, toolRequest.Height);
        using var pipeline = EllaPipeline.Load(load, m => ctx.Error.WriteLine(m));
        long seed = Robustness.Seeds.Given(p.GetValue(o.Seed)) ?? Robustness.Seeds.Random();
        var variants = new (string Label, GenerationMode Mode, TokenLength Length)[]
        {
            ("SD1.5 (CLIP)", GenerationMode.Clip, TokenLength.Fixed),
            ("ELLA fixed", GenerationMode.Ella, TokenLength.Fixed),
            ("ELLA flexible", GenerationMode.Ella, TokenLength.Flexible),
        };
        var cells = new List<RgbImage>();
        var warnings = new HashSet<string>();
        foreach (var (label, mode, length) in variants)
        {
            var request = toolRequest with { Mode = mode, TokenLength = length, Seed = seed };
            pipeline.Validate(request);
            var progress = new StepProgressReporter(ctx.Error, StepProgressReporter.IsInteractive(ctx.Error), $"{label}: ");
            using var result = pipeline.Generate(request, progress, ctx.Interrupt);
            foreach (var w in result.Warnings) if (warnings.Add(w)) ctx.Error.WriteLine($"warning ({label}): {w}");
            cells.Add(RgbImage.FromTensor(result.Images[0]).UpscaleNearest(factor));
        }
        var grid = ImageGrid.Make(cells, cells.Count, variants.Select(v => v.Label).ToList(), gap: 4);
        grid.SavePng(output, new Dictionary<string, string>
        {
            ["parameters"] = $"{prompt}\nNegative prompt: {negative}\nSteps: {p.GetValue(o.Steps)}, Sampler: {p.GetValue(o.Scheduler)}, CFG scale: {p.GetValue(o.Guidance)}, Seed: {Robustness.Seeds.Format(seed)}, Size: {toolRequest.Width}x{toolRequest.Height}, {(factor > 1 ? $"Upscale: {factor}x nearest, " : "")}{string.Concat(ToolCliOptions.Parameters(toolRequest).Select(s => s + ", "))}Grid: SD1.5 (CLIP) | ELLA fixed | ELLA flexible, Version: EllaSharp",
        });
        ctx.Error.WriteLine($"seed {Robustness.Seeds.Format(seed)}");
        ctx.Out.WriteLine(output);
        return EllaCli.ExitOk;
    }
}
