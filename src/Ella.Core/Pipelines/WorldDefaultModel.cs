using Ella.Configs;
using Ella.Modules.Ella;
using Ella.TextEncoders;

namespace Ella.Pipelines;

/// <summary>
/// The shapes-world model that ships with EllaSharp (<c>models/shapes-world/</c>, a diffusers folder with a small
/// CLIP + UNet + VAE and <c>ella/connector.safetensors</c>, a TSC trained on MiniLM features): what every command that
/// takes model flags uses when it gets none (<c>--sd</c>, <c>--t5</c>, <c>--ella</c>, <c>--text-encoder</c>) and no
/// environment variable names a model (<c>ELLA_SD</c>, <c>ELLA_T5</c>, <c>ELLA_ELLA</c>).
/// Found at <c>$ELLA_WORLD_MODEL</c> when set, else <c>&lt;the program's folder&gt;/models/shapes-world</c> (the CLI
/// copies <c>models/**</c> to its output), else in <c>models/shapes-world</c> of the current folder or a parent.
/// </summary>
public sealed class WorldDefaultModel
{
    public const string EnvVar = "ELLA_WORLD_MODEL";
    public static readonly string RelativeFolder = Path.Combine("models", "shapes-world");
    /// <summary>The file that marks a folder as the world model (diffusers' pipeline index).</summary>
    public const string MarkerFile = "model_index.json";
    /// <summary>Environment variables that name a model: when one is set, the world is not the default.</summary>
    public static readonly string[] ModelEnvVars = ["ELLA_SD", "ELLA_T5", "ELLA_ELLA"];
    /// <summary>The flags that name a model: when one is given, the world is not the default.</summary>
    public const string ModelFlags = "--sd, --t5, --ella, --text-encoder";

    /// <summary>The diffusers folder (the <c>--sd</c> of the world).</summary>
    public string Folder { get; }

    WorldDefaultModel(string folder) => Folder = folder;

    /// <summary>
    /// The world model in <paramref name="folder"/> when it is one (its <c>model_index.json</c> says
    /// <c>"world": "shapes"</c>, as <c>ella world train</c> writes), else null: so <c>--sd my-world</c> gets the world's
    /// own image size, not SD's 512×512.
    /// </summary>
    public static WorldDefaultModel? Of(string? folder)
    {
        if (string.IsNullOrEmpty(folder) || !File.Exists(Path.Combine(folder, MarkerFile))) return null;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, MarkerFile)));
            return doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object && doc.RootElement.TryGetProperty("world", out var w)
                && w.ValueKind == System.Text.Json.JsonValueKind.String && w.GetString() == "shapes" ? new WorldDefaultModel(folder) : null;
        }
        catch (System.Text.Json.JsonException) { return null; } // the model loader reports a broken index with its own error
    }

    /// <summary>The world's trained TSC (the <c>--ella</c> of the world).</summary>
    public string ConnectorPath => Path.Combine(Folder, "ella", "connector.safetensors");

    public bool HasConnector => File.Exists(ConnectorPath);

    /// <summary>The connector, or an error saying the world has none yet (the clip mode still works).</summary>
    public string RequireConnector() => HasConnector ? ConnectorPath
        : throw new EllaException($"{ConnectorPath}: the shapes-world model has no trained ELLA connector (yet); use --mode clip for its base model, or pass --ella FILE");

    /// <summary>The text encoder the world's connector reads: its <c>text_encoder</c> metadata; MiniLM (what the world
    /// is trained on) when the connector names none or does not exist yet.</summary>
    public TextEncoderKind TextEncoder => HasConnector ? ConnectorMetadata.TextEncoderKindOf(ConnectorPath) ?? TextEncoderKind.MiniLM : TextEncoderKind.MiniLM;

    /// <summary>The images the world makes by default: the UNet's <c>sample_size</c> × the VAE's downscale factor (64×64).</summary>
    public (int Width, int Height) DefaultSize()
    {
        var unet = UNet2DConditionConfig.Load(Path.Combine(Folder, "unet"));
        var vae = AutoencoderKLConfig.Load(Path.Combine(Folder, "vae"));
        int side = (unet.SampleSize ?? 64) * vae.DownscaleFactor;
        return (side, side);
    }

    /// <summary>True when no environment variable names a model (so, without model flags, the world is the default).</summary>
    public static bool NoModelEnvironment(Func<string, string?>? env = null)
    {
        env ??= Environment.GetEnvironmentVariable;
        return ModelEnvVars.All(v => string.IsNullOrWhiteSpace(env(v)));
    }

    /// <summary>The folder, or null when it is not found. <paramref name="env"/> reads <see cref="EnvVar"/>; a value that
    /// does not hold the model is an error (naming the variable), not a fallback.</summary>
    public static string? Find(string baseDirectory, string currentDirectory, Func<string, string?>? env = null)
    {
        env ??= Environment.GetEnvironmentVariable;
        if (env(EnvVar) is { Length: > 0 } set)
        {
            if (!File.Exists(Path.Combine(set, MarkerFile)))
                throw new EllaException($"{EnvVar}={set}: not the shapes-world model folder ({MarkerFile} is missing there)");
            return set;
        }
        string beside = Path.Combine(baseDirectory, RelativeFolder);
        if (File.Exists(Path.Combine(beside, MarkerFile))) return beside;
        for (var dir = new DirectoryInfo(Path.GetFullPath(currentDirectory)); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, RelativeFolder);
            if (File.Exists(Path.Combine(candidate, MarkerFile))) return candidate;
        }
        return null;
    }

    /// <summary>The world model, or an <see cref="EllaException"/> that says where it was looked for and names the flags.</summary>
    /// <param name="baseDirectory">the program's folder (default <see cref="AppContext.BaseDirectory"/>)</param>
    /// <param name="currentDirectory">where the walk up starts (default the current directory)</param>
    public static WorldDefaultModel Locate(string? baseDirectory = null, string? currentDirectory = null, Func<string, string?>? env = null)
    {
        baseDirectory ??= AppContext.BaseDirectory;
        string? folder = Find(baseDirectory, currentDirectory ?? Directory.GetCurrentDirectory(), env);
        if (folder == null)
            throw new EllaException($"no model given and the default shapes-world model was not found (looked in {Path.Combine(baseDirectory, RelativeFolder)} " +
                                    $"and in {RelativeFolder} of the current folder and its parents): pass --sd PATH (with --ella and --t5 or --text-encoder for ELLA), " +
                                    $"set ELLA_SD / ELLA_ELLA / ELLA_T5, or point {EnvVar} at the world's folder");
        return new WorldDefaultModel(folder);
    }
}
