using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace Ella.Configs;

/// <summary>
/// A diffusers <c>scheduler_config.json</c>. JSON names are diffusers' constructor arguments. Every field is nullable:
/// a key the file does not have stays null and each scheduler applies ITS OWN default, exactly as diffusers'
/// <c>from_config</c> does (e.g. SD1.5's file has no timestep_spacing: DPM-Solver and Euler use 'linspace', DDIM and
/// PNDM 'leading').
/// </summary>
public sealed class SchedulerConfig
{
    [JsonPropertyName("_class_name")] public string? ClassName { get; set; }
    [JsonPropertyName("num_train_timesteps")] public int? NumTrainTimesteps { get; set; }
    [JsonPropertyName("beta_start")] public double? BetaStart { get; set; }
    [JsonPropertyName("beta_end")] public double? BetaEnd { get; set; }
    [JsonPropertyName("beta_schedule")] public string? BetaSchedule { get; set; }
    [JsonPropertyName("trained_betas")] public double[]? TrainedBetas { get; set; }
    [JsonPropertyName("prediction_type")] public string? PredictionType { get; set; }
    [JsonPropertyName("timestep_spacing")] public string? TimestepSpacing { get; set; }
    [JsonPropertyName("steps_offset")] public int? StepsOffset { get; set; }
    [JsonPropertyName("rescale_betas_zero_snr")] public bool? RescaleBetasZeroSnr { get; set; }
    [JsonPropertyName("set_alpha_to_one")] public bool? SetAlphaToOne { get; set; }
    [JsonPropertyName("clip_sample")] public bool? ClipSample { get; set; }
    [JsonPropertyName("clip_sample_range")] public double? ClipSampleRange { get; set; }
    [JsonPropertyName("thresholding")] public bool? Thresholding { get; set; }
    [JsonPropertyName("skip_prk_steps")] public bool? SkipPrkSteps { get; set; }
    [JsonPropertyName("solver_order")] public int? SolverOrder { get; set; }
    [JsonPropertyName("algorithm_type")] public string? AlgorithmType { get; set; }
    [JsonPropertyName("solver_type")] public string? SolverType { get; set; }
    [JsonPropertyName("lower_order_final")] public bool? LowerOrderFinal { get; set; }
    [JsonPropertyName("euler_at_final")] public bool? EulerAtFinal { get; set; }
    [JsonPropertyName("use_karras_sigmas")] public bool? UseKarrasSigmas { get; set; }
    [JsonPropertyName("use_lu_lambdas")] public bool? UseLuLambdas { get; set; }
    [JsonPropertyName("final_sigmas_type")] public string? FinalSigmasType { get; set; }
    [JsonPropertyName("lambda_min_clipped")] public double? LambdaMinClipped { get; set; }
    [JsonPropertyName("variance_type")] public string? VarianceType { get; set; }
    [JsonPropertyName("interpolation_type")] public string? InterpolationType { get; set; }
    [JsonPropertyName("timestep_type")] public string? TimestepType { get; set; }
    [JsonPropertyName("sigma_min")] public double? SigmaMin { get; set; }
    [JsonPropertyName("sigma_max")] public double? SigmaMax { get; set; }

    /// <summary>Any other keys, kept so a config round-trips.</summary>
    [JsonExtensionData] public Dictionary<string, JsonElement>? Extra { get; set; }

    static readonly JsonSerializerOptions Options = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals | JsonNumberHandling.AllowReadingFromString,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    // diffusers writes bare -Infinity / Infinity / NaN (Python's json), which is not JSON; quote them before parsing.
    static readonly Regex BareLiteral = new(@"(?<=[:\[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])", RegexOptions.Compiled);

    public static SchedulerConfig Parse(string json, string source)
    {
        try
        {
            return JsonSerializer.Deserialize<SchedulerConfig>(BareLiteral.Replace(json, "\"$1\""), Options)
                   ?? throw new EllaException($"{source}: empty scheduler config");
        }
        catch (JsonException e)
        {
            throw new EllaException($"{source}: not a valid scheduler config ({e.Message})", e);
        }
    }

    /// <summary>The values every scheduler relies on, checked when the file is read (each names its key).</summary>
    public void Validate(string source)
    {
        void Require(bool ok, string m) { if (!ok) throw new EllaException($"{source}: {m}"); }
        Require(NumTrainTimesteps is null or (>= 2 and <= 100_000), $"num_train_timesteps must be between 2 and 100000, got {NumTrainTimesteps}");
        Require(BetaStart is null || (double.IsFinite(BetaStart.Value) && BetaStart > 0 && BetaStart < 1), $"beta_start must be in (0, 1), got {BetaStart}");
        Require(BetaEnd is null || (double.IsFinite(BetaEnd.Value) && BetaEnd > 0 && BetaEnd < 1), $"beta_end must be in (0, 1), got {BetaEnd}");
        Require(BetaSchedule is null or "linear" or "scaled_linear" or "squaredcos_cap_v2", $"beta_schedule '{BetaSchedule}' is not supported (linear, scaled_linear, squaredcos_cap_v2)");
        Require(PredictionType is null or "epsilon" or "v_prediction" or "sample", $"prediction_type '{PredictionType}' is not supported (epsilon, v_prediction, sample)");
        Require(TimestepSpacing is null or "linspace" or "leading" or "trailing", $"timestep_spacing '{TimestepSpacing}' is not supported (linspace, leading, trailing)");
        Require(StepsOffset is null or (>= 0 and < 1000), $"steps_offset must be between 0 and 999, got {StepsOffset}");
        Require(SolverOrder is null or (>= 1 and <= 3), $"solver_order must be 1, 2 or 3, got {SolverOrder}");
        Require(TrainedBetas is null || (TrainedBetas.Length >= 2 && TrainedBetas.All(b => double.IsFinite(b) && b > 0 && b < 1)), "trained_betas must be a list of numbers in (0, 1)");
    }

    public static SchedulerConfig Load(string path)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "scheduler_config.json");
        if (!File.Exists(path)) throw new EllaException($"{path}: scheduler config not found");
        var config = Parse(File.ReadAllText(path), path);
        config.Validate(path);
        return config;
    }

    /// <summary>The SD1.5 release's scheduler_config.json (PNDM), used when a checkpoint brings none.</summary>
    public static SchedulerConfig StableDiffusion15() => new()
    {
        ClassName = "PNDMScheduler", NumTrainTimesteps = 1000, BetaStart = 0.00085, BetaEnd = 0.012,
        BetaSchedule = "scaled_linear", SetAlphaToOne = false, SkipPrkSteps = true, StepsOffset = 1, ClipSample = false,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Options);

    public SchedulerConfig Clone() => Parse(ToJson(), "clone");
}
