using System.Globalization;
using System.Text.RegularExpressions;

namespace Ella.Lora;

/// <summary>
/// Automatic1111's prompt syntax <c>&lt;lora:name:multiplier&gt;</c> (multiplier 1 when omitted; a third field, the
/// separate UNet multiplier, overrides it for the UNet only in A1111 and is read here as the one multiplier when given).
/// Tags are removed from the prompt text; the name is looked up in a folder as <c>name.safetensors</c>.
/// </summary>
public static partial class LoraPromptTags
{
    [GeneratedRegex(@"<lora:([^:>]+)(?::([^:>]*))?(?::([^:>]*))?>", RegexOptions.IgnoreCase)]
    private static partial Regex Tag();

    /// <summary>The prompt without its tags, and the tags as (name, multiplier).</summary>
    public static (string Prompt, List<(string Name, double Multiplier)> Tags) Extract(string prompt)
    {
        var tags = new List<(string, double)>();
        string rest = Tag().Replace(prompt, m =>
        {
            string name = m.Groups[1].Value.Trim();
            string mult = m.Groups[3].Success && m.Groups[3].Value.Length > 0 ? m.Groups[3].Value : m.Groups[2].Value;
            double value = 1.0;
            if (mult.Length > 0 && !double.TryParse(mult, NumberStyles.Float, CultureInfo.InvariantCulture, out value))
                throw new EllaException($"prompt tag {m.Value}: '{mult}' is not a number");
            tags.Add((name, value));
            return "";
        });
        return (tags.Count > 0 ? Regex.Replace(rest, @"\s{2,}", " ").Trim() : prompt, tags);
    }

    /// <summary>Resolves a tag's name in <paramref name="folder"/> (name.safetensors, or the exact file name).</summary>
    public static string Resolve(string name, string? folder)
    {
        if (folder == null) throw new EllaException($"prompt tag <lora:{name}>: give --lora-dir to say where LoRA files are");
        foreach (var candidate in new[] { Path.Combine(folder, name + ".safetensors"), Path.Combine(folder, name) })
            if (File.Exists(candidate)) return candidate;
        throw new EllaException($"prompt tag <lora:{name}>: no {name}.safetensors in --lora-dir {folder}");
    }
}
