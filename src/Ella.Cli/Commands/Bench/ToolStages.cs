using System.Diagnostics;
using Ella.Benchmarks;
using Ella.Configs;
using Ella.Lora;
using Ella.Modules.ControlNet;
using Ella.Modules.UNet;
using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Cli.Commands.Bench;

/// <summary>
/// The community tools' stages of <c>ella bench</c>: a ControlNet step next to the UNet step it rides on (the issue's
/// budget: at most 0.6× a UNet step), and merging / unmerging a kohya LoRA of the usual size (rank 128 on every
/// attention, feed-forward and projection weight of the UNet's transformer blocks, fp16, about 140 MB; budget: merge
/// in at most 1 s).
/// </summary>
public static class ToolStages
{
    public const int LoraRank = 128;
    public const float LoraAlpha = 64;
    public const double LoraMultiplier = 0.8;
    /// <summary>The bench LoRA's file in the work folder (UNet and text-encoder halves).</summary>
    public static readonly string LoraFileName = $"lora-rank{LoraRank}-unet-te.safetensors";

    /// <summary>The UNet weights a kohya LoRA usually trains: the transformer blocks' linears and their projections.</summary>
    public static bool IsLoraTarget(string name, Tensor weight) =>
        name.EndsWith(".weight") && weight.dim() is 2 or 4 && (weight.dim() == 2 || weight.shape[2] == 1)
        && (name.Contains(".transformer_blocks.") || name.EndsWith(".proj_in.weight") || name.EndsWith(".proj_out.weight"))
        && !name.Contains("norm");

    /// <summary>The CLIP text-encoder weights a kohya LoRA trains: each layer's attention and MLP projections.</summary>
    public static bool IsTextEncoderLoraTarget(string name, Tensor weight) =>
        name.EndsWith(".weight") && weight.dim() == 2 && name.Contains(".encoder.layers.")
        && (name.Contains(".self_attn.") || name.Contains(".mlp."));

    /// <summary>Writes a random kohya LoRA for <paramref name="unet"/>'s config and, when given, SD1.5's CLIP text encoder
    /// (once): lora_down [r, in(,1,1)], lora_up [out, r(,1,1)], alpha, all fp16.</summary>
    public static void WriteLora(string path, UNet2DConditionConfig unet, ClipTextConfig? textEncoder, TextWriter log)
    {
        if (File.Exists(path)) return;
        var sw = Stopwatch.StartNew();
        var specs = new List<SafetensorsWriter.TensorSpec>();
        void Add(string prefix, string name, Tensor p)
        {
            string key = prefix + name[..^".weight".Length].Replace('.', '_');
            bool conv = p.dim() == 4;
            long outC = p.shape[0], inC = p.shape[1];
            specs.Add(new(key + ".lora_down.weight", ScalarType.Float16, conv ? [LoraRank, inC, 1, 1] : [LoraRank, inC]));
            specs.Add(new(key + ".lora_up.weight", ScalarType.Float16, conv ? [outC, LoraRank, 1, 1] : [outC, LoraRank]));
            specs.Add(new(key + ".alpha", ScalarType.Float16, []));
        }
        using (var meta = RandomCheckpoint.OnMeta(() => new UNet2DConditionModel(unet)))
            foreach (var (name, p) in meta.named_parameters())
                if (IsLoraTarget(name, p)) Add("lora_unet_", name, p);
        int unetModules = specs.Count / 3;
        if (textEncoder != null)
        {
            using var meta = RandomCheckpoint.OnMeta(() => new Modules.Clip.ClipTextModel(textEncoder));
            foreach (var (name, p) in meta.named_parameters())
                if (IsTextEncoderLoraTarget(name, p)) Add("lora_te_", name, p);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var generator = new Generator(9);
        SafetensorsWriter.SaveStreaming(path, specs, spec => spec.Name.EndsWith(".alpha")
            ? full([], LoraAlpha, dtype: ScalarType.Float16)
            : randn(spec.Shape, generator: generator).mul_(0.01).to_type(ScalarType.Float16),
            new Dictionary<string, string> { ["ss_network_dim"] = LoraRank.ToString(), ["ella_random"] = "true" });
        log.WriteLine($"wrote random rank-{LoraRank} LoRA ({new FileInfo(path).Length / 1048576.0:F0} MiB, {unetModules} UNet + {specs.Count / 3 - unetModules} text-encoder modules) in {sw.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>Analytic FLOPs of one merge: 2·out·in·rank per module.</summary>
    public static double LoraMergeFlops(string path)
    {
        using var file = LoraFile.Open(path);
        double flops = 0;
        foreach (var m in file.Modules)
        {
            var up = file.Source.GetInfo(m.UpName).Shape;
            var down = file.Source.GetInfo(m.DownName).Shape;
            flops += 2.0 * up[0] * down[1] * down[0];
        }
        return flops;
    }

    /// <summary>
    /// Times the LoRA on the loaded UNet: the first merge (reads the file, keeps the originals), then
    /// <paramref name="runs"/> unmerge + merge cycles, as a server switching LoRAs per request does; checks that the
    /// final unmerge restores every weight bit for bit.
    /// </summary>
    /// <returns>the first merge's time and where it went (<see cref="LoraPatcher.LastMergeBreakdown"/>), then the cycles' timings</returns>
    public static (double First, string FirstBreakdown, TimingStats Merge, TimingStats Unmerge) TimeLora(UNet2DConditionModel unet, Modules.Clip.ClipTextModel? textEncoder, string path, int runs)
    {
        var touched = unet.named_parameters().Where(p => IsLoraTarget(p.name, p.parameter))
            .Concat(textEncoder?.named_parameters().Where(p => IsTextEncoderLoraTarget(p.name, p.parameter)) ?? []).ToList();
        var before = touched.Select(p => p.parameter.detach().clone()).ToList();
        var spec = new LoraSpec(path, LoraMultiplier);
        using var patcher = new LoraPatcher(unet, textEncoder);
        var warnings = new List<string>();
        var sw = Stopwatch.StartNew();
        patcher.Use([spec], warnings);
        double first = sw.Elapsed.TotalSeconds;
        if (warnings.Count > 0) throw new EllaException($"bench: the LoRA did not apply in full: {string.Join("; ", warnings)}");
        var (open, keep, add) = patcher.LastMergeBreakdown;
        var (fromCheckpoint, inMemory, inMemoryBytes) = patcher.Originals;
        string breakdown = $"open {open.TotalSeconds:F3} s, originals kept {keep.TotalSeconds:F3} s ({fromCheckpoint} checked against the checkpoint, {inMemory} copied aside: {inMemoryBytes / 1048576.0:F0} MiB), products added {add.TotalSeconds:F3} s";
        var merges = new List<double>();
        var unmerges = new List<double>();
        for (int i = 0; i < runs; i++)
        {
            sw.Restart();
            patcher.Unmerge();
            unmerges.Add(sw.Elapsed.TotalSeconds);
            sw.Restart();
            patcher.Use([spec]);
            merges.Add(sw.Elapsed.TotalSeconds);
        }
        patcher.Unmerge();
        for (int i = 0; i < touched.Count; i++)
        {
            using var same = touched[i].parameter.detach().eq(before[i]).all();
            if (!same.item<bool>()) throw new EllaException($"bench: unmerging the LoRA did not restore {touched[i].name} bit for bit");
            before[i].Dispose();
        }
        return (first, breakdown, TimingStats.Of(merges), TimingStats.Of(unmerges));
    }

    /// <summary>The conditioning image of a ControlNet step: [2, 3, size, size] in [0, 1] (the CFG batch).</summary>
    public static Tensor ControlImage(int size, ScalarType dtype) => rand([2, 3, size, size], generator: new Generator(10)).to_type(dtype);
}
