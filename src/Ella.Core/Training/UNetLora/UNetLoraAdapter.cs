using Ella.Modules.Common;
using System.Globalization;
using Ella.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Training.UNetLora;

/// <summary>
/// A trainable LoRA on a frozen UNet: for every attention projection (<c>to_q</c>, <c>to_k</c>, <c>to_v</c>,
/// <c>to_out.0</c>, the target modules of diffusers' LoRA training script) a float32 pair
/// <c>lora_down</c> [rank, in] (Kaiming-uniform, as PEFT initialises <c>lora_A</c>) and <c>lora_up</c> [out, rank]
/// (zeros, so training starts from the base model). A forward hook adds <c>alpha/rank · up(down(x))</c> to each
/// projection's output; the UNet's own weights are never touched. Saved in the kohya layout
/// (<c>lora_unet_&lt;path&gt;.lora_down.weight</c>, <c>.lora_up.weight</c>, <c>.alpha</c>) that <c>ella generate --lora</c>,
/// Automatic1111 and ComfyUI read.
/// </summary>
public sealed class UNetLoraAdapter : IDisposable
{
    public static readonly string[] TargetNames = ["to_q", "to_k", "to_v", "to_out.0"];

    readonly List<Entry> _entries = [];
    readonly List<Action> _removeHooks = [];

    sealed record Entry(string Key, Parameter Down, Parameter Up);

    public int Rank { get; }
    public double Alpha { get; }
    double Scale => Alpha / Rank;

    /// <summary>The trainable tensors (down and up of every target), float32.</summary>
    public IReadOnlyList<Parameter> Parameters => _entries.SelectMany(e => new[] { e.Down, e.Up }).ToList();

    /// <param name="generator">draws the Kaiming-uniform initialisation of the down projections</param>
    public UNetLoraAdapter(nn.Module unet, int rank, double alpha, Generator generator, Device? device = null)
    {
        if (rank < 1) throw new EllaException($"--rank {rank}: must be at least 1");
        if (!(alpha > 0)) throw new EllaException($"--lora-alpha {alpha}: must be positive");
        Rank = rank;
        Alpha = alpha;
        foreach (var (path, module) in unet.named_modules())
        {
            if (module is not Linear linear || !TargetNames.Any(t => path.EndsWith("." + t, StringComparison.Ordinal))) continue;
            if (!path.Contains("attentions.", StringComparison.Ordinal)) continue; // the transformer blocks, as kohya's UNet LoRA
            long outFeatures = linear.weight!.shape[0], inFeatures = linear.weight.shape[1];
            // kaiming_uniform_(a=√5): bound = 1/√in, PEFT's lora_A initialisation.
            double bound = 1.0 / Math.Sqrt(inFeatures);
            var down = new Parameter(rand([rank, inFeatures], generator: generator, device: device) * (2 * bound) - bound);
            var up = new Parameter(zeros([outFeatures, rank], device: device));
            var entry = new Entry("lora_unet_" + path.Replace('.', '_'), down, up);
            _entries.Add(entry);
            var hook = linear.register_forward_hook((_, input, output) => Add(entry, input, output));
            var release = LinearKernel.KeepModuleCall(linear);
            _removeHooks.Add(() => { hook.remove(); release.Dispose(); });
        }
        if (_entries.Count == 0) throw new EllaException("the UNet has no attention projections (to_q/to_k/to_v/to_out.0) to put a LoRA on");
    }

    Tensor Add(Entry e, Tensor input, Tensor output)
    {
        using var scope = NewDisposeScope();
        var delta = nn.functional.linear(nn.functional.linear(input.to_type(ScalarType.Float32), e.Down), e.Up);
        return (output + (delta * Scale).to_type(output.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Writes the kohya-layout file (float32; metadata: rank, alpha, targets and the caller's entries).</summary>
    public void Save(string path, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var alphas = new List<Tensor>();
        try
        {
            foreach (var e in _entries)
            {
                var alpha = tensor((float)Alpha);
                alphas.Add(alpha);
                tensors.Add(new(e.Key + ".lora_down.weight", e.Down.detach()));
                tensors.Add(new(e.Key + ".lora_up.weight", e.Up.detach()));
                tensors.Add(new(e.Key + ".alpha", alpha));
            }
            var meta = new Dictionary<string, string>
            {
                ["ss_network_module"] = "networks.lora", ["ss_network_dim"] = Rank.ToString(CultureInfo.InvariantCulture),
                ["ss_network_alpha"] = Alpha.ToString(CultureInfo.InvariantCulture), ["ella_lora_targets"] = string.Join(",", TargetNames),
            };
            if (metadata != null) foreach (var (k, v) in metadata) meta[k] = v;
            SafetensorsWriter.Save(path, tensors, meta);
        }
        finally { foreach (var a in alphas) a.Dispose(); }
    }

    /// <summary>Loads down/up weights saved by <see cref="Save"/> (a resumed run).</summary>
    public void Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        using (no_grad())
            foreach (var e in _entries)
                foreach (var (suffix, p) in new[] { (".lora_down.weight", e.Down), (".lora_up.weight", e.Up) })
                {
                    string key = e.Key + suffix;
                    if (!file.Contains(key)) throw new EllaException($"{path}: no tensor '{key}' (the LoRA does not belong to this UNet and rank)");
                    file.ReadInto(key, p);
                }
    }

    public void Dispose()
    {
        foreach (var remove in _removeHooks) remove();
        _removeHooks.Clear();
        foreach (var e in _entries) { e.Down.Dispose(); e.Up.Dispose(); }
        _entries.Clear();
    }
}
