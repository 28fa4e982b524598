using System.Text.Json;

namespace Ella.Weights;

/// <summary>What a path given by the user holds.</summary>
public enum CheckpointFormat
{
    SafetensorsFile,
    /// <summary>An original (LDM/CompVis) single-file Stable Diffusion checkpoint: <c>model.diffusion_model.*</c> keys.</summary>
    SingleFileStableDiffusion,
    ShardedIndex,
    /// <summary>A Hugging Face model folder (<c>config.json</c> + weights).</summary>
    HuggingFaceFolder,
    /// <summary>A diffusers pipeline folder (<c>model_index.json</c> + one subfolder per component).</summary>
    DiffusersPipelineFolder,
}

/// <summary>Opens checkpoints as <see cref="ITensorSource"/>s and says what a path holds.</summary>
public static class Checkpoint
{
    static readonly string[] PickleExtensions = [".ckpt", ".bin", ".pt", ".pth", ".pkl"];

    /// <summary>Weight file names looked for in a model folder, most preferred first.</summary>
    public static readonly string[] FolderWeightNames =
    [
        "model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json",
        "model.safetensors", "diffusion_pytorch_model.safetensors",
    ];

    /// <summary>
    /// Opens a <c>.safetensors</c> file, a <c>*.safetensors.index.json</c>, or a model folder holding one of
    /// <see cref="FolderWeightNames"/>. Pickle files are refused: loading them executes code from the file.
    /// </summary>
    public static ITensorSource Open(string path)
    {
        if (Directory.Exists(path))
        {
            string? weights = FindFolderWeights(path);
            if (weights == null)
            {
                var pickles = Directory.EnumerateFiles(path).Where(IsPickle).Select(System.IO.Path.GetFileName).ToList();
                if (pickles.Count > 0) throw PickleRefusal(System.IO.Path.Combine(path, pickles[0]!));
                throw new CheckpointException($"{path}: no weights found (looked for {string.Join(", ", FolderWeightNames)})");
            }
            return Open(weights);
        }
        if (!File.Exists(path)) throw new CheckpointException($"{path}: no such file or folder");
        if (IsPickle(path)) throw PickleRefusal(path);
        if (path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)) return ShardedSafetensors.Open(path);
        if (LooksLikeZipOrPickle(path)) throw PickleRefusal(path);
        return SafetensorsFile.Open(path);
    }

    /// <summary>The weights file of a model folder, or null.</summary>
    public static string? FindFolderWeights(string folder) =>
        FolderWeightNames.Select(n => System.IO.Path.Combine(folder, n)).FirstOrDefault(File.Exists);

    public static bool IsPickle(string path) =>
        PickleExtensions.Contains(System.IO.Path.GetExtension(path), StringComparer.OrdinalIgnoreCase);

    static bool LooksLikeZipOrPickle(string path)
    {
        using var fs = File.OpenRead(path);
        Span<byte> head = stackalloc byte[9];
        int read = fs.ReadAtLeast(head, 9, throwOnEndOfStream: false);
        if (read < 2) return false;
        if (read == 9 && head[8] == (byte)'{') return false; // safetensors: 8-byte header length, then the JSON header (its length may start with 0x80)
        return (head[0] == (byte)'P' && head[1] == (byte)'K') || head[0] == 0x80; // zip (torch.save) or a pickle protocol byte
    }

    public static CheckpointException PickleRefusal(string path) => new(
        $"{path}: this is a pickle checkpoint. EllaSharp does not read pickle files, because unpickling can run arbitrary code " +
        "hidden in the file. Convert it to safetensors once, in Python: " +
        "python -c \"import torch; from safetensors.torch import save_file; sd = torch.load('IN', map_location='cpu', weights_only=True); " +
        "sd = sd.get('state_dict', sd); save_file({k: v.contiguous() for k, v in sd.items()}, 'OUT.safetensors')\" " +
        "(or use diffusers' convert scripts), then pass the .safetensors file.");

    /// <summary>Says what a path holds, without reading tensor data.</summary>
    public static CheckpointFormat Detect(string path)
    {
        if (Directory.Exists(path))
        {
            if (File.Exists(System.IO.Path.Combine(path, "model_index.json"))) return CheckpointFormat.DiffusersPipelineFolder;
            string? w = FindFolderWeights(path);
            if (w != null && File.Exists(System.IO.Path.Combine(path, "config.json"))) return CheckpointFormat.HuggingFaceFolder;
            if (w != null && w.EndsWith(".index.json", StringComparison.Ordinal)) return CheckpointFormat.ShardedIndex;
            if (w != null) return CheckpointFormat.HuggingFaceFolder;
            using var _ = Open(path); // throws the right message
        }
        if (path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)) return CheckpointFormat.ShardedIndex;
        using var source = Open(path);
        return IsSingleFileStableDiffusion(source) ? CheckpointFormat.SingleFileStableDiffusion : CheckpointFormat.SafetensorsFile;
    }

    /// <summary>Key fingerprint of an original-layout SD checkpoint.</summary>
    public static bool IsSingleFileStableDiffusion(ITensorSource source) =>
        source.Contains("model.diffusion_model.input_blocks.0.0.weight");

    /// <summary>Components of a diffusers pipeline folder that hold weights, from its model_index.json.</summary>
    public static IReadOnlyList<string> PipelineComponents(string folder)
    {
        string index = System.IO.Path.Combine(folder, "model_index.json");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            return doc.RootElement.EnumerateObject()
                .Where(p => !p.Name.StartsWith('_') && p.Value.ValueKind == JsonValueKind.Array)
                .Select(p => p.Name)
                .Where(c => Directory.Exists(System.IO.Path.Combine(folder, c)) && FindFolderWeights(System.IO.Path.Combine(folder, c)) != null)
                .ToList();
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{index}: not valid JSON ({e.Message})", e);
        }
    }
}
