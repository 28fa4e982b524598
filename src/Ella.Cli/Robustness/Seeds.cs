using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace Ella.Cli.Robustness;

/// <summary>
/// <c>--seed</c>: 0 … 2^64−1 (torch.Generator's range), or -1 for a random seed, as in Automatic1111. Seeds above
/// 2^63−1 are carried in a long with the same 64 bits, so the generator sees the number the user typed.
/// </summary>
public static class Seeds
{
    public static long? Parse(ArgumentResult result)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (!BigInteger.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            result.AddError($"--seed '{text}': not a whole number (0 … {ulong.MaxValue}, or -1 for a random seed)");
            return null;
        }
        if (value == -1) return null;
        if (value < 0 || value > ulong.MaxValue)
        {
            result.AddError($"--seed {text}: outside the 64-bit seed range 0 … {ulong.MaxValue} (-1 for a random seed)");
            return null;
        }
        return unchecked((long)(ulong)value);
    }

    /// <summary>A random seed, as exact in a double as in a long (below 2^53).</summary>
    public static long Random() => System.Random.Shared.NextInt64(0, 1L << 53);

    public static string Format(long seed) => ((ulong)seed).ToString(CultureInfo.InvariantCulture);
}
