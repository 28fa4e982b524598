using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.TextEncoders;
using Ella.Weights;

namespace Ella.Evaluation.WorldBench;

/// <summary>
/// The rows <c>ella world eval</c> knows and where each finds its connector in a world model folder:
/// <c>base</c> (CLIP, no connector), <c>ella</c> and <c>ella+clip</c> (<c>ella/connector.safetensors</c>), and the
/// ablations <c>mlp</c>, <c>resampler</c>, <c>tsc-arctic-xs</c> (<c>ablations/&lt;name&gt;.safetensors</c>). Each
/// connector runs on the text encoder its metadata names (<c>text_encoder</c>).
/// </summary>
public static class WorldEvalRows
{
    public const string Base = "base";
    public const string Ella = "ella";
    public const string EllaClip = "ella+clip";
    public const string Mlp = "mlp";
    public const string Resampler = "resampler";
    public const string TscArcticXs = "tsc-arctic-xs";

    /// <summary>Every row, in table order (the default of <c>--rows</c>).</summary>
    public static readonly string[] Names = [Base, Ella, EllaClip, Mlp, Resampler, TscArcticXs];

    /// <summary>The connector metadata key that names the text encoder a connector reads.</summary>

    /// <summary>The connector file a row uses in <paramref name="modelDir"/> (null: the base row uses none).</summary>
    public static string? ConnectorPath(string modelDir, string row) => row switch
    {
        Base => null,
        Ella or EllaClip => Path.Combine(modelDir, "ella", "connector.safetensors"),
        Mlp or Resampler or TscArcticXs => Path.Combine(modelDir, "ablations", row + ".safetensors"),
        _ => throw new EllaException($"--rows {row}: unknown row (choose from: {string.Join(", ", Names)})"),
    };

    /// <summary>The text encoder a connector's <c>__metadata__</c> names.</summary>
    public static TextEncoderKind TextEncoderOf(string connector)
    {
        string TextEncoderMetadataKey = ConnectorMetadata.TextEncoderKey;
        if (ConnectorMetadata.TextEncoder(connector) is not { } name)
            throw new EllaException($"{connector}: its metadata has no '{TextEncoderMetadataKey}' key ({string.Join(" | ", TextEncoderKinds.Names)}), so the text encoder it reads is unknown");
        try { return TextEncoderKinds.Parse(name); }
        catch (EllaException) { throw new EllaException($"{connector}: metadata {TextEncoderMetadataKey} '{name}' is not a known text encoder ({string.Join(", ", TextEncoderKinds.Names)})"); }
    }

    /// <summary>
    /// The rows to run. <paramref name="requested"/> null means every row, and rows whose connector file is missing are
    /// left out with a note; rows named explicitly must have their files (else an error naming the row and the file).
    /// </summary>
    public static (List<WorldEvalRow> Rows, SortedDictionary<string, string> Skipped) Resolve(string modelDir, IReadOnlyList<string>? requested)
    {
        var names = requested ?? Names;
        if (names.Count == 0) throw new EllaException($"--rows: no rows given (choose from: {string.Join(", ", Names)})");
        var rows = new List<WorldEvalRow>();
        var skipped = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var name in names.Distinct())
        {
            string? connector = ConnectorPath(modelDir, name);
            if (connector != null && !File.Exists(connector))
            {
                if (requested != null) throw new EllaException($"--rows {name}: {connector} not found");
                skipped[name] = $"{connector} not found";
                continue;
            }
            var mode = name switch { Base => GenerationMode.Clip, EllaClip => GenerationMode.EllaClip, _ => GenerationMode.Ella };
            rows.Add(new WorldEvalRow(name, mode, connector, connector != null ? TextEncoderOf(connector) : TextEncoderKind.T5));
        }
        return (rows, skipped);
    }
}
