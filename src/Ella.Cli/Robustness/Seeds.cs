using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace Ella.Cli.Robustness;

/// <summary>
/// <c>--seed</c>: 0 … 2^63−1 (a 64-bit signed seed for torch.Generator), or -1 for a random seed, as in Automatic1111.
/// Anything else, including numbers outside the 64-bit range, is refused by the parser with one line.
/// </summary>
public static class Seeds
{
    /// <summary>The parsed value: a seed, or <see cref="RandomSeed"/> (-1).</summary>
    public static long Parse(ArgumentResult result)
    {
        string text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (!BigInteger.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            result.AddError($"--seed '{text}': not a whole number (0 … {long.MaxValue}, or -1 for a random seed)");
            return RandomSeed;
        }
        if (value == RandomSeed) return RandomSeed;
        if (value < 0 || value > long.MaxValue)
        {
            result.AddError($"--seed {text}: outside the 64-bit seed range 0 … {long.MaxValue} (-1 for a random seed)");
            return RandomSeed;
        }
        return (long)value;
    }

    public const long RandomSeed = -1;

    /// <summary>The seed an option gave, or null for a random one (-1 or absent).</summary>
    public static long? Given(long? value) => value is null or RandomSeed ? null : value;

    /// <summary>A random seed, as exact in a double as in a long (below 2^53).</summary>
    public static long Random() => System.Random.Shared.NextInt64(0, 1L << 53);

    public static string Format(long seed) => seed.ToString(CultureInfo.InvariantCulture);
}
