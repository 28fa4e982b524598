using System.Diagnostics;
using Ella.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ella.Lora;

/// <summary>
/// Merges LoRAs into model weights in place (W += m · alpha/rank · up·down) and restores them bit for bit. A long-running
/// process switches LoRAs per request with <see cref="Use"/>, which only re-merges when the set changes.
/// </summary>
/// <remarks>
/// The first time a weight is touched, its original is kept in one of two ways:
/// <list type="bullet">
/// <item>When the weight still equals, bit for bit, the checkpoint tensor it was loaded from
/// (<see cref="WeightOrigins"/>, <see cref="SafetensorsFile.Matches"/>), <see cref="Unmerge"/> reads that tensor again
/// through the same conversion. Nothing is copied: a LoRA on all of SD1.5's transformer weights would otherwise take
/// ~1.4 GB of fresh memory in fp32, which costs more than the merge itself (page faults, ~1.5 s per GB on a VM whose
/// host reclaims free memory). The checkpoint stays open; if it is written to meanwhile, <see cref="Unmerge"/> refuses
/// to restore from it.</item>
/// <item>Otherwise (a weight changed since loading, or built in memory) it is copied into one pooled buffer per dtype,
/// backed by transparent huge pages, kept until the patcher is disposed.</item>
/// </list>
/// Either way a switch costs one restore and the merge's matmuls, never a second copy.
/// </remarks>
public sealed class LoraPatcher : IDisposable
{
    readonly Dictionary<LoraTarget, nn.Module?> _models;
    /// <summary>Originals kept in memory (views of <see cref="_pools"/>, or clones off the CPU).</summary>
    readonly Dictionary<(LoraTarget, string), Tensor> _copies = new();
    /// <summary>Originals that are read again from the checkpoint they were loaded from.</summary>
    readonly Dictionary<(LoraTarget, string), (SafetensorsFile File, string Name)> _stored = new();
    /// <summary>Checkpoints opened for <see cref="_stored"/>, by full path; null when unusable (changed since loading, unreadable).</summary>
    readonly Dictionary<string, SafetensorsFile?> _checkpoints = new();
    /// <summary>The weights that differ from their originals now.</summary>
    readonly HashSet<(LoraTarget, string)> _touched = new();
    /// <summary>The buffers the in-memory originals are views of.</summary>
    readonly List<Tensor> _pools = new();
    Dictionary<LoraTarget, Dictionary<string, (string Name, Parameter Weight)>>? _parameters;
    IReadOnlyList<LoraSpec> _current = [];

    public LoraPatcher(nn.Module unet, nn.Module? textEncoder)
    {
        _models = new() { [LoraTarget.UNet] = unet, [LoraTarget.TextEncoder] = textEncoder };
    }

    /// <summary>Where the last <see cref="Merge"/> spent its time: opening the file, keeping the originals (checked
    /// against their checkpoint, or copied aside), and the products.</summary>
    public (TimeSpan Open, TimeSpan KeepOriginals, TimeSpan Add) LastMergeBreakdown { get; private set; }

    /// <summary>The LoRAs merged now.</summary>
    public IReadOnlyList<LoraSpec> Current => _current;
    /// <summary>How the originals are kept: read again from their checkpoint, or held in memory (and how many bytes).</summary>
    public (int FromCheckpoint, int InMemory, long InMemoryBytes) Originals =>
        (_stored.Count, _copies.Count, _copies.Values.Sum(t => t.numel() * t.ElementSize));

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

    /// <summary>
    /// Keeps the originals of the weights not kept yet: by their checkpoint when they still equal it, otherwise copied
    /// into a pooled buffer per dtype (one allocation, huge pages).
    /// </summary>
    void KeepOriginals(IEnumerable<((LoraTarget, string) Key, Parameter Weight)> weights)
    {
        var fresh = new Dictionary<(LoraTarget, string), Parameter>();
        foreach (var (key, w) in weights)
        {
            if (_copies.ContainsKey(key) || _stored.ContainsKey(key)) continue;
            if (StoredOriginal(w) is { } stored) _stored[key] = stored;
            else if (w.device_type == TorchSharp.DeviceType.CPU) fresh.TryAdd(key, w);
            else _copies[key] = w.detach().clone().DetachFromDisposeScope();
        }
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
                _copies[key] = slot;
                offset += w.numel();
            }
        }
    }

    /// <summary>The checkpoint tensor <paramref name="weight"/> was loaded from, when it still equals it bit for bit.</summary>
    (SafetensorsFile File, string Name)? StoredOriginal(Parameter weight)
    {
        if (!WeightOrigins.TryGet(weight, out var origin)) return null;
        if (!_checkpoints.TryGetValue(origin.File, out var file))
        {
            try
            {
                file = SafetensorsFile.Open(origin.File);
                if (file.Version != origin.Version) { file.Dispose(); file = null; }
            }
            catch (Exception e) when (e is CheckpointException or IOException or UnauthorizedAccessException) { file = null; }
            _checkpoints[origin.File] = file;
        }
        return file != null && file.Matches(origin.Name, weight.detach()) ? (file, origin.Name) : null;
    }

    /// <summary>
    /// Restores every touched weight to its original bits (the originals are kept for the next merge). A checkpoint
    /// written to since it was opened is an error before anything is restored: the model must then be loaded again.
    /// </summary>
    public void Unmerge()
    {
        if (_touched.Count > 0)
        {
            var changed = _touched.Where(_stored.ContainsKey).Select(k => _stored[k].File).Distinct().FirstOrDefault(f => f.ChangedSinceOpened);
            if (changed != null)
                throw new EllaException($"{changed.Path}: the checkpoint was written to while a LoRA was merged into weights loaded from it, so they cannot be restored from it; load the model again");
            using var _ = no_grad();
            foreach (var key in _touched)
            {
                var weight = Parameters(key.Item1)[key.Item2].Weight;
                if (_stored.TryGetValue(key, out var stored)) stored.File.ReadInto(stored.Name, weight);
                else weight.copy_(_copies[key]);
            }
            _touched.Clear();
        }
        _current = [];
    }

    public void Dispose()
    {
        foreach (var t in _copies.Values) t.Dispose();
        _copies.Clear();
        _stored.Clear();
        foreach (var file in _checkpoints.Values) file?.Dispose();
        _checkpoints.Clear();
        foreach (var t in _pools) t.Dispose();
        _pools.Clear();
        _touched.Clear();
    }
}
