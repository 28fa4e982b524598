using System.Diagnostics;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Lora;

/// <summary>
/// Merges LoRAs into model weights in place (W += m · alpha/rank · up·down) and restores them bit for bit: the first
/// time a weight is touched its original is copied aside, and <see cref="Unmerge"/> copies it back. A long-running
/// process switches LoRAs per request with <see cref="Use"/>, which only re-merges when the set changes.
/// The originals of one merge are copied into one pooled buffer backed by transparent huge pages (a gigabyte of fresh
/// 4 KB pages costs seconds of page faults on some hosts; 2 MB pages 512× fewer), and they stay in memory until the
/// patcher is disposed (one copy of every weight a LoRA ever touched: ~1.1 GB for a LoRA on all of SD1.5's
/// transformer weights in fp32), so switching sets never copies a weight aside again: a switch costs one copy back
/// and the merge's matmuls.
/// </summary>
public sealed class LoraPatcher : IDisposable
{
    readonly Dictionary<LoraTarget, nn.Module?> _models;
    readonly Dictionary<(LoraTarget, string), Tensor> _originals = new();
    /// <summary>The weights that differ from their originals now.</summary>
    readonly HashSet<(LoraTarget, string)> _touched = new();
    /// <summary>The buffers the originals are views of.</summary>
    readonly List<Tensor> _pools = new();
    Dictionary<LoraTarget, Dictionary<string, (string Name, Parameter Weight)>>? _parameters;
    IReadOnlyList<LoraSpec> _current = [];

    public LoraPatcher(nn.Module unet, nn.Module? textEncoder)
    {
        _models = new() { [LoraTarget.UNet] = unet, [LoraTarget.TextEncoder] = textEncoder };
    }

    /// <summary>Where the last <see cref="Merge"/> spent its time: opening the file, copying originals aside, and the products.</summary>
    public (TimeSpan Open, TimeSpan KeepOriginals, TimeSpan Add) LastMergeBreakdown { get; private set; }

    /// <summary>The LoRAs merged now.</summary>
    public IReadOnlyList<LoraSpec> Current => _current;
    /// <summary>Whether a text-encoder weight is currently changed.</summary>
    public bool TextEncoderPatched => _touched.Any(k => k.Item1 == LoraTarget.TextEncoder);

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
        var opened = sw.Elapsed;
        using var _ = no_grad();
        var unmatched = new List<string>(file.UnknownKeys);
        int merged = 0, skippedText = 0;
        var matched = new List<(LoraModule Module, (LoraTarget, string) Key, Parameter Weight)>();
        foreach (var m in file.Modules)
        {
            if (m.Target == LoraTarget.TextEncoder && _models[LoraTarget.TextEncoder] == null) { skippedText++; continue; }
            var map = Parameters(m.Target);
            if (!map.TryGetValue(m.KohyaNames ? "_" + m.Module : m.Module, out var found)) { unmatched.Add(m.Key); continue; }
            matched.Add((m, (m.Target, found.Name), found.Weight));
        }
        var beforeKeep = sw.Elapsed;
        KeepOriginals(matched.Select(x => (x.Key, x.Weight)));
        var kept = sw.Elapsed;
        foreach (var (m, key, weight) in matched)
        {
            _touched.Add(key);
            file.AddTo(m, weight, spec.Multiplier);
            merged++;
        }
        LastMergeBreakdown = (opened, kept - beforeKeep, sw.Elapsed - kept);
        if (merged == 0 && skippedText == 0)
            throw new EllaException($"{spec.Path}: no LoRA key matches a module of this model (first keys: {string.Join(", ", unmatched.Take(3))})");
        if (unmatched.Count > 0)
            warnings?.Add($"{Path.GetFileName(spec.Path)}: {unmatched.Count} LoRA keys match no module and were ignored: {string.Join(", ", unmatched.Take(5))}{(unmatched.Count > 5 ? ", …" : "")}");
        if (skippedText > 0)
            warnings?.Add($"{Path.GetFileName(spec.Path)}: {skippedText} text-encoder LoRA modules not applied (CLIP is not loaded; use --mode clip or ella+clip)");
        return sw.Elapsed;
    }

    /// <summary>Copies the weights not kept yet into a pooled buffer per dtype (one allocation, huge pages).</summary>
    void KeepOriginals(IEnumerable<((LoraTarget, string) Key, Parameter Weight)> weights)
    {
        var fresh = new Dictionary<(LoraTarget, string), Parameter>();
        foreach (var (key, w) in weights)
            if (!_originals.ContainsKey(key) && w.device_type == TorchSharp.DeviceType.CPU) fresh.TryAdd(key, w);
            else if (!_originals.ContainsKey(key)) _originals[key] = w.detach().clone().DetachFromDisposeScope();
        foreach (var group in fresh.GroupBy(kv => kv.Value.dtype))
        {
            long total = group.Sum(kv => kv.Value.numel());
            var pool = empty([total], dtype: group.Key).DetachFromDisposeScope();
            unsafe
            {
                // The advice needs the buffer's address: a short view's span gives it (a span cannot cover > 2 GB).
                using var head = pool.narrow(0, 0, Math.Min(total, 1024));
                fixed (byte* data = head.bytes) Native.FileAdvice.HugePages(data, total * pool.ElementSize);
            }
            _pools.Add(pool);
            long offset = 0;
            foreach (var (key, w) in group)
            {
                var slot = pool.narrow(0, offset, w.numel()).view(w.shape).DetachFromDisposeScope();
                slot.copy_(w.detach());
                _originals[key] = slot;
                offset += w.numel();
            }
        }
    }

    /// <summary>Restores every touched weight to its original bits (the originals are kept for the next merge).</summary>
    public void Unmerge()
    {
        if (_touched.Count > 0)
        {
            using var _ = no_grad();
            foreach (var key in _touched)
                Parameters(key.Item1)[key.Item2].Weight.copy_(_originals[key]);
            _touched.Clear();
        }
        _current = [];
    }

    public void Dispose()
    {
        foreach (var t in _originals.Values) t.Dispose();
        _originals.Clear();
        foreach (var t in _pools) t.Dispose();
        _pools.Clear();
        _touched.Clear();
    }
}
