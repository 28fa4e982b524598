using System.Text;
using TorchSharp;

namespace Ella.Weights;

/// <summary>Strict loading of a checkpoint into a module, one tensor at a time.</summary>
public static class StateDictLoader
{
    /// <summary>
    /// Copies every tensor of <paramref name="source"/> into the parameter or buffer of the same name, converting to the
    /// module's dtype. Before anything is copied, ALL problems are collected: missing keys, unexpected keys and shape
    /// mismatches, reported together in one <see cref="CheckpointException"/> naming the source.
    /// </summary>
    /// <param name="ignore">Keys that may be absent from the module or the file (e.g. tied embeddings).</param>
    /// <returns>The number of tensors loaded.</returns>
    public static int Load(torch.nn.Module module, ITensorSource source, IEnumerable<string>? ignore = null)
    {
        var targets = CheckFits(module, source, ignore);
        int loaded = 0;
        source.PrefetchAll();
        using (torch.no_grad())
        {
            foreach (var name in source.ReadOrder(targets.Keys.Where(source.Contains).ToList()))
            {
                source.ReadInto(name, targets[name]);
                loaded++;
            }
        }
        return loaded;
    }

    /// <summary>
    /// Names and shapes only (the module may live on the meta device): throws one <see cref="CheckpointException"/>
    /// listing missing keys, unexpected keys and shape mismatches.
    /// </summary>
    public static Dictionary<string, torch.Tensor> CheckFits(torch.nn.Module module, ITensorSource source, IEnumerable<string>? ignore = null)
    {
        var ignored = new HashSet<string>(ignore ?? [], StringComparer.Ordinal);
        var targets = module.state_dict();
        var missing = targets.Keys.Where(k => !source.Contains(k) && !ignored.Contains(k)).ToList();
        var unexpected = source.Names.Where(k => !targets.ContainsKey(k) && !ignored.Contains(k)).ToList();
        var mismatched = new List<string>();
        foreach (var (name, target) in targets)
        {
            if (!source.Contains(name)) continue;
            var info = source.GetInfo(name);
            if (!info.Shape.SequenceEqual(target.shape))
                mismatched.Add($"{name}: checkpoint [{string.Join(", ", info.Shape)}] vs model [{string.Join(", ", target.shape)}]");
        }
        if (missing.Count + unexpected.Count + mismatched.Count > 0)
        {
            var sb = new StringBuilder($"{source.Path}: does not fit {module.GetName()}:");
            Append(sb, "missing keys", missing);
            Append(sb, "unexpected keys", unexpected);
            Append(sb, "shape mismatches", mismatched);
            throw new CheckpointException(sb.ToString());
        }
        return targets;
    }

    static void Append(StringBuilder sb, string title, List<string> items)
    {
        if (items.Count == 0) return;
        const int show = 50;
        sb.Append($" {items.Count} {title} ({string.Join("; ", items.Take(show))}{(items.Count > show ? $"; … {items.Count - show} more" : "")}).");
    }
}
