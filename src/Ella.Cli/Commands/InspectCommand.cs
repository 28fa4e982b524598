using System.CommandLine;
using System.Text.Json;
using Ella.Weights;

namespace Ella.Cli.Commands;

/// <summary><c>ella inspect PATH [--json]</c>: what a checkpoint file or model folder holds.</summary>
public static class InspectCommand
{
    public static Command Create(CliContext ctx)
    {
        var path = new Argument<string>("path") { Description = "A .safetensors file, a *.safetensors.index.json, or a model folder (HF, diffusers)" };
        var json = new Option<bool>("--json") { Description = "Print {\"format\", \"parameters\", \"tensors\": [{\"name\", \"dtype\", \"shape\"}], ...} to stdout" };
        var list = new Option<bool>("--tensors") { Description = "Also list every tensor (name, dtype, shape) in the text output" };
        var command = new Command("inspect", "Show a checkpoint's format, tensor and parameter counts, dtypes and size") { path, json, list };
        command.SetAction(parse => Run(ctx, parse.GetValue(path)!, parse.GetValue(json), parse.GetValue(list)));
        return command;
    }

    /// <summary>The JSON names of <see cref="CheckpointFormat"/>.</summary>
    public static string FormatName(CheckpointFormat f) => f switch
    {
        CheckpointFormat.SafetensorsFile => "safetensors",
        CheckpointFormat.SingleFileStableDiffusion => "single_file_sd",
        CheckpointFormat.ShardedIndex => "sharded_index",
        CheckpointFormat.HuggingFaceFolder => "hf_folder",
        CheckpointFormat.DiffusersPipelineFolder => "diffusers_folder",
        _ => f.ToString(),
    };

    static string Describe(CheckpointFormat f) => f switch
    {
        CheckpointFormat.SafetensorsFile => "safetensors file",
        CheckpointFormat.SingleFileStableDiffusion => "single-file Stable Diffusion checkpoint (original LDM layout)",
        CheckpointFormat.ShardedIndex => "sharded safetensors (index)",
        CheckpointFormat.HuggingFaceFolder => "Hugging Face model folder",
        CheckpointFormat.DiffusersPipelineFolder => "diffusers pipeline folder",
        _ => f.ToString(),
    };

    static int Run(CliContext ctx, string path, bool asJson, bool listTensors)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) throw new EllaException($"{path}: no such file or folder");
        var format = Checkpoint.Detect(path);
        var tensors = new List<TensorInfo>();
        var metadata = new Dictionary<string, string>();
        if (format == CheckpointFormat.DiffusersPipelineFolder)
        {
            foreach (var component in Checkpoint.PipelineComponents(path))
            {
                using var source = Checkpoint.Open(Path.Combine(path, component));
                tensors.AddRange(source.Names.Select(n => source.GetInfo(n) with { Name = $"{component}/{n}" }));
            }
        }
        else
        {
            using var source = Checkpoint.Open(path);
            tensors.AddRange(source.Names.Select(source.GetInfo));
            foreach (var (k, v) in source.Metadata) metadata[k] = v;
        }
        tensors.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        long parameters = tensors.Where(IsFloating).Sum(t => t.ElementCount);
        long bytes = tensors.Sum(t => t.ByteLength);
        var dtypes = tensors.GroupBy(t => t.DType).OrderByDescending(g => g.Count()).ToDictionary(g => g.Key, g => g.Count());

        if (asJson)
        {
            var doc = new
            {
                path,
                format = FormatName(format),
                parameters,
                tensor_count = tensors.Count,
                bytes,
                dtypes,
                metadata,
                tensors = tensors.Select(t => new { name = t.Name, dtype = t.DType, shape = t.Shape }),
            };
            ctx.Out.WriteLine(JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
            return EllaCli.ExitOk;
        }
        ctx.Out.WriteLine($"path:       {path}");
        ctx.Out.WriteLine($"format:     {Describe(format)}");
        ctx.Out.WriteLine($"tensors:    {tensors.Count:N0}");
        ctx.Out.WriteLine($"parameters: {parameters:N0} ({Human(parameters, 1000, "")})");
        ctx.Out.WriteLine($"dtypes:     {string.Join(", ", dtypes.Select(kv => $"{kv.Key} ×{kv.Value}"))}");
        ctx.Out.WriteLine($"bytes:      {bytes:N0} ({Human(bytes, 1024, "B")})");
        foreach (var (k, v) in metadata)
            ctx.Out.WriteLine($"metadata:   {k} = {(v.Length > 120 ? v[..120].ReplaceLineEndings(" ") + "…" : v.ReplaceLineEndings(" "))}");
        if (listTensors)
            foreach (var t in tensors) ctx.Out.WriteLine($"  {t.Name}  {t.DType}  [{string.Join(", ", t.Shape)}]");
        return EllaCli.ExitOk;
    }

    static bool IsFloating(TensorInfo t) => t.DType is "F64" or "F32" or "F16" or "BF16";

    static string Human(double v, double unit, string suffix)
    {
        string[] prefixes = unit == 1024 ? ["", "Ki", "Mi", "Gi", "Ti"] : ["", "K", "M", "B", "T"];
        int i = 0;
        while (v >= unit && i < prefixes.Length - 1) { v /= unit; i++; }
        return $"{v:0.##} {prefixes[i]}{suffix}".Trim();
    }
}
