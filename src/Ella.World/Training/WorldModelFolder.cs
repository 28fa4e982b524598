using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Ella.Modules.Ella;
using Ella.Weights;
using static TorchSharp.torch;

namespace Ella.World.Training;

/// <summary>
/// Writes the shapes world as a diffusers folder (vae/, text_encoder/, tokenizer/, unet/, scheduler/,
/// model_index.json, ella/ and ablations/) in bf16, each safetensors carrying its provenance in the metadata:
/// the command, seed, steps and commit that produced it.
/// </summary>
public static class WorldModelFolder
{
    public const string ConnectorFolder = "ella";
    public const string ConnectorFile = "connector.safetensors";
    public const string AblationsFolder = "ablations";

    /// <summary>Where a connector of the recipe goes: ella/connector.safetensors for the TSC on MiniLM, ablations/&lt;name&gt;.safetensors otherwise.</summary>
    public static string ConnectorPath(string modelDir, string name) => name == "tsc"
        ? Path.Combine(modelDir, ConnectorFolder, ConnectorFile)
        : Path.Combine(modelDir, AblationsFolder, name + ".safetensors");

    public static void WriteComponent(string dir, string weightsFile, object config, nn.Module module, IReadOnlyDictionary<string, string> provenance)
    {
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));
        SaveBf16(Path.Combine(dir, weightsFile), module.state_dict(), provenance);
    }

    public static void SaveBf16(string path, IEnumerable<KeyValuePair<string, Tensor>> state, IReadOnlyDictionary<string, string> metadata)
    {
        using var scope = NewDisposeScope();
        var converted = state.Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.is_floating_point() ? kv.Value.detach().to_type(ScalarType.BFloat16) : kv.Value)).ToList();
        var meta = new Dictionary<string, string>(metadata) { ["format"] = "pt" };
        SafetensorsWriter.Save(path, converted, meta);
    }

    /// <summary>A connector trained by stage 3, in bf16, with <c>text_encoder</c> and provenance in its metadata.</summary>
    public static void WriteConnector(string path, string trainedFile, string textEncoder, IReadOnlyDictionary<string, string> provenance)
    {
        using var connector = Connectors.FromPretrained(trainedFile, ScalarType.BFloat16);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var meta = new Dictionary<string, string>(provenance) { [ConnectorMetadata.TextEncoderKey] = textEncoder };
        connector.Save(path, meta);
    }

    /// <summary>
    /// Sets tokenizer/tokenizer_config.json's model_max_length (what the pipeline pads and truncates a CLIP prompt to)
    /// to the base CLIP's context; any other key is kept as it is.
    /// </summary>
    public static void SetTokenizerMaxLength(string tokenizerDir, int maxLength)
    {
        string path = Path.Combine(tokenizerDir, "tokenizer_config.json");
        var config = File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? new JsonObject() : new JsonObject();
        if (config["model_max_length"]?.GetValue<long>() == maxLength) return;
        config["model_max_length"] = maxLength;
        File.WriteAllText(path, config.ToJsonString());
    }

    public static void WriteIndex(string modelDir, string command)
    {
        var index = new JsonObject
        {
            ["_class_name"] = "StableDiffusionPipeline",
            ["_diffusers_version"] = "0.27.2",
            ["world"] = "shapes",
            ["feature_extractor"] = new JsonArray(null, null),
            ["safety_checker"] = new JsonArray(null, null),
            ["scheduler"] = new JsonArray("diffusers", "DPMSolverMultistepScheduler"),
            ["text_encoder"] = new JsonArray("transformers", "CLIPTextModel"),
            ["tokenizer"] = new JsonArray("transformers", "CLIPTokenizer"),
            ["unet"] = new JsonArray("diffusers", "UNet2DConditionModel"),
            ["vae"] = new JsonArray("diffusers", "AutoencoderKL"),
            ["ella"] = $"{ConnectorFolder}/{ConnectorFile}",
            ["produced_by"] = command,
        };
        File.WriteAllText(Path.Combine(modelDir, "model_index.json"), index.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>The commit of the source tree (git rev-parse HEAD, with "-dirty" when there are changes), or "unknown".</summary>
    public static string Commit()
    {
        try
        {
            string Run(string args)
            {
                using var p = Process.Start(new ProcessStartInfo("git", args) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
                string o = p.StandardOutput.ReadToEnd().Trim();
                p.WaitForExit();
                return p.ExitCode == 0 ? o : "";
            }
            string head = Run("rev-parse HEAD");
            if (head.Length == 0) return "unknown";
            return Run("status --porcelain --untracked-files=no").Length > 0 ? head + "-dirty" : head;
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return "unknown";
        }
    }
}
