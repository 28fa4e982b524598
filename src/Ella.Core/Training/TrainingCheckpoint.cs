using System.Text.Json;
using System.Text.Json.Serialization;
using Ella.Modules.Ella;
using Ella.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Training;

/// <summary>The run state a checkpoint keeps beside the weights (<c>state.json</c>).</summary>
public sealed class TrainingState
{
    [JsonPropertyName("step")] public int Step { get; set; }
    /// <summary>Samples consumed from the data stream (including skipped ones): where the next batch starts.</summary>
    [JsonPropertyName("data_position")] public long DataPosition { get; set; }
    [JsonPropertyName("seed")] public long Seed { get; set; }
    [JsonPropertyName("lr_schedule")] public string LrSchedule { get; set; } = "constant";
    [JsonPropertyName("lr")] public double Lr { get; set; }
    [JsonPropertyName("warmup_steps")] public int WarmupSteps { get; set; }
    [JsonPropertyName("max_steps")] public int MaxSteps { get; set; }
    [JsonPropertyName("batch")] public int Batch { get; set; }
    [JsonPropertyName("grad_accum")] public int GradAccum { get; set; }
    [JsonPropertyName("last_loss")] public double LastLoss { get; set; }
    /// <summary>"connector", or "unet-lora" (then the checkpoint holds lora.safetensors and <see cref="Init"/> names the frozen connector).</summary>
    [JsonPropertyName("target")] public string Target { get; set; } = "connector";
    [JsonPropertyName("init")] public string? Init { get; set; }
    /// <summary>The frozen models' dtype ("fp32", "bf16", "fp16"); absent in checkpoints older than the field.</summary>
    [JsonPropertyName("dtype")] public string? DType { get; set; }
    /// <summary>The distillation weight W (<c>--distill</c>); absent (0) without a teacher.</summary>
    [JsonPropertyName("distill")] public double? Distill { get; set; }
    /// <summary>The foreground weight W (<c>--foreground-weight</c>); absent (1) when every element counts the same.</summary>
    [JsonPropertyName("foreground_weight")] public double? ForegroundWeight { get; set; }
}

/// <summary>
/// <c>OUT/checkpoint-&lt;step&gt;/</c>: <c>connector.safetensors</c> (loadable by <c>ella generate --ella</c>) or, for a
/// UNet LoRA, <c>lora.safetensors</c> (loadable by <c>--lora</c>),
/// <c>optimizer.bin</c> (AdamW state), <c>rng.safetensors</c> (the noise generator's state) and <c>state.json</c>
/// (step, data position, LR schedule). Written into a hidden folder, then renamed: a checkpoint is whole or absent.
/// </summary>
public static class TrainingCheckpoint
{
    public const string Prefix = "checkpoint-";
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static string PathFor(string output, int step) => Path.Combine(output, $"{Prefix}{step}");

    /// <param name="connectorMetadata">extra safetensors metadata of the connector (e.g. <c>text_encoder</c>)</param>
    public static string Save(string output, TrainingState state, ConnectorModule connector, AdamW optimizer, Generator rng, int keepLast,
        IReadOnlyDictionary<string, string>? connectorMetadata = null) =>
        Save(output, state, dir => connector.Save(Path.Combine(dir, "connector.safetensors"), connectorMetadata), optimizer, rng, keepLast);

    /// <param name="writeWeights">writes the trained weights into the (temporary) checkpoint folder</param>
    public static string Save(string output, TrainingState state, Action<string> writeWeights, AdamW optimizer, Generator rng, int keepLast)
    {
        string final = PathFor(output, state.Step);
        string tmp = Path.Combine(output, $".{Prefix}{state.Step}.tmp-{Environment.ProcessId}");
        if (Directory.Exists(tmp)) Directory.Delete(tmp, true);
        Directory.CreateDirectory(tmp);
        writeWeights(tmp);
        optimizer.save_state_dict(Path.Combine(tmp, "optimizer.bin"));
        using (var rngState = rng.get_state())
            SafetensorsWriter.Save(Path.Combine(tmp, "rng.safetensors"), [new("noise_generator", rngState)]);
        File.WriteAllText(Path.Combine(tmp, "state.json"), JsonSerializer.Serialize(state, Json));
        if (Directory.Exists(final)) Directory.Delete(final, true);
        Directory.Move(tmp, final);
        foreach (var old in List(output).SkipLast(keepLast)) Directory.Delete(old.Path, true);
        return final;
    }

    /// <summary>Finished checkpoints under <paramref name="output"/>, oldest first.</summary>
    public static List<(int Step, string Path)> List(string output) =>
        !Directory.Exists(output) ? new()
        : Directory.GetDirectories(output, Prefix + "*")
            .Select(d => (Ok: int.TryParse(System.IO.Path.GetFileName(d)[Prefix.Length..], out int s), Step: s, Path: d))
            .Where(x => x.Ok && File.Exists(System.IO.Path.Combine(x.Path, "state.json")))
            .OrderBy(x => x.Step).Select(x => (x.Step, x.Path)).ToList();

    public static (string Path, TrainingState State) Latest(string output)
    {
        var all = List(output);
        if (all.Count == 0) throw new EllaException($"--resume {output}: no checkpoint-<step>/ folder with a state.json in it");
        var (_, path) = all[^1];
        TrainingState? state;
        try { state = JsonSerializer.Deserialize<TrainingState>(File.ReadAllText(Path.Combine(path, "state.json"))); }
        catch (JsonException e) { throw new EllaException($"{path}/state.json: not valid JSON ({e.Message})", e); }
        return (path, state ?? throw new EllaException($"{path}/state.json: empty"));
    }

    /// <summary>Restores the optimizer and the generator from a checkpoint folder (weights are loaded by the caller).</summary>
    public static void Restore(string path, AdamW optimizer, Generator rng)
    {
        optimizer.load_state_dict(Path.Combine(path, "optimizer.bin"));
        using var f = SafetensorsFile.Open(Path.Combine(path, "rng.safetensors"));
        using var state = f.Read("noise_generator");
        rng.set_state(state);
    }
}
