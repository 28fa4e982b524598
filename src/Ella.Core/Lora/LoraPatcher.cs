using System.Diagnostics;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Lora;

/// <summary>
/// Merges LoRAs into model weights in place (W += m · alpha/rank · up·down) and restores them bit for bit: the first
/// time a weight is touched its original is copied aside, and <see cref="Unmerge"/> copies it back. A long-running
/// process switches LoRAs per request with <see cref="Use"/>, which only re-merges when the set changes.
/// </summary>
public sealed class LoraPatcher : IDisposable
{
    readonly Dictionary<LoraTarget, nn.Module?> _models;
    readonly Dictionary<(LoraTarget, string), Tensor> _originals = new();
    Dictionary<LoraTarget, Dictionary<string, (string Name, Parameter Weight)>>? _parameters;
    IReadOnlyList<LoraSpec> _current = [];

    public LoraPatcher(nn.Module unet, nn.Module? textEncoder)
    {
        _models = new() { [LoraTarget.UNet] = unet, [LoraTarget.TextEncoder] = textEncoder };
    }

    /// <summary>The LoRAs merged now.</summary>
    public IReadOnlyList<LoraSpec> Current => _current;
    /// <summary>Whether a text-encoder weight is currently changed.</summary>
    public bool TextEncoderPatched => _originals.Keys.Any(k => k.Item1 == LoraTarget.TextEncoder);

    /// <summary>Makes <paramref name="specs"/> the merged set (nothing happens when it already is).</summary>
    /// <returns>whether the weights changed</returns>
    public bool Use(IReadOnlyList<LoraSpec> specs, List<string>? warnings = null)
    {
        if (specs.SequenceEqual(_current)) return false;
        Unmerge();
        foreach (var spec in specs) Merge(spec, warnings);
        _current = specs.ToList();
        return true;
    }

    /// <summary>Weights by module path (dots, PEFT) and by kohya name ("_" + path with underscores).</summary>
    Dictionary<string, (string Name, Parameter Weight)> Parameters(LoraTarget target)
    {
        _parameters ??= new();
        if (!_parameters.TryGetValue(target, out var map))
        {
            map = new Dictionary<string, (string, Parameter)>();
            if (_models[target] is { } model)
                foreach (var (name, p) in model.named_parameters())
                    if (name.EndsWith(".weight") && p.dim() is 2 or 4)
                    {
                        string module = name[..^".weight".Length];
                        map[module] = (module, p);
                        map["_" + module.Replace('.', '_')] = (module, p);
                    }
            _parameters[target] = map;
        }
        return map;
    }

    /// <summary>Merges one LoRA file. Unmatched keys go to <paramref name="warnings"/>; a file where nothing matches is an error.</summary>
    public TimeSpan Merge(LoraSpec spec, List<string>? warnings = null)
    {
        var sw = Stopwatch.StartNew();
        using var file = LoraFile.Open(spec.Path);
        using var _ = no_grad();
        var unmatched = new List<string>(file.UnknownKeys);
        int merged = 0, skippedText = 0;
        foreach (var m in file.Modules)
        {
            if (m.Target == LoraTarget.TextEncoder && _models[LoraTarget.TextEncoder] == null) { skippedText++; continue; }
            var map = Parameters(m.Target);
            if (!map.TryGetValue(m.KohyaNames ? "_" + m.Module : m.Module, out var found)) { unmatched.Add(m.Key); continue; }
            var (name, p) = found;
            var key = (m.Target, name);
            if (!_originals.ContainsKey(key)) _originals[key] = p.detach().clone().DetachFromDisposeScope();
            file.AddTo(m, p, spec.Multiplier);
            merged++;
        }
        if (merged == 0 && skippedText == 0)
            throw new EllaException($"{spec.Path}: no LoRA key matches a module of this model (first keys: {string.Join(", ", unmatched.Take(3))})");
        if (unmatched.Count > 0)
            warnings?.Add($"{Path.GetFileName(spec.Path)}: {unmatched.Count} LoRA keys match no module and were ignored: {string.Join(", ", unmatched.Take(5))}{(unmatched.Count > 5 ? ", …" : "")}");
        if (skippedText > 0)
            warnings?.Add($"{Path.GetFileName(spec.Path)}: {skippedText} text-encoder LoRA modules not applied (CLIP is not loaded; use --mode clip or ella+clip)");
        return sw.Elapsed;
    }

    /// <summary>Restores every touched weight to its original bits.</summary>
    public void Unmerge()
    {
        if (_originals.Count > 0)
        {
            using var _ = no_grad();
            foreach (var ((target, key), original) in _originals)
            {
                Parameters(target)[key].Weight.copy_(original);
                original.Dispose();
            }
            _originals.Clear();
        }
        _current = [];
    }

    public void Dispose()
    {
        foreach (var t in _originals.Values) t.Dispose();
        _originals.Clear();
    }
}
