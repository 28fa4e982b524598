using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Ella.Text.PromptWeights;

/// <summary>A piece of prompt text and its attention weight; <see cref="IsBreak"/> marks A1111's BREAK keyword.</summary>
public sealed record WeightedText(string Text, double Weight)
{
    public bool IsBreak => Weight < 0 && Text == "BREAK";
}

/// <summary>
/// Automatic1111's prompt-attention syntax (modules/prompt_parser.py, parse_prompt_attention): <c>(text)</c> ×1.1,
/// <c>[text]</c> ÷1.1, nesting multiplies, <c>(text:1.3)</c> sets a factor, <c>\(</c> <c>\)</c> <c>\[</c> <c>\]</c>
/// <c>\\</c> are literal, unbalanced brackets apply to the end, BREAK starts a new 75-token chunk. Runs of equal weight
/// are merged.
/// </summary>
public static partial class PromptAttention
{
    public const double RoundMultiplier = 1.1;
    public const double SquareMultiplier = 1 / 1.1;

    [GeneratedRegex(@"\\\(|\\\)|\\\[|\\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|\]|[^\\()\[\]:]+|:")]
    private static partial Regex Attention();

    [GeneratedRegex(@"\s*\bBREAK\b\s*", RegexOptions.Singleline)]
    private static partial Regex Break();

    public static List<WeightedText> Parse(string text)
    {
        var res = new List<(string Text, double Weight)>();
        var round = new Stack<int>();
        var square = new Stack<int>();
        void Multiply(int start, double m)
        {
            for (int p = start; p < res.Count; p++) res[p] = (res[p].Text, res[p].Weight * m);
        }
        foreach (Match m in Attention().Matches(text))
        {
            string t = m.Value;
            var weight = m.Groups[1];
            if (t.StartsWith('\\')) res.Add((t[1..], 1.0));
            else if (t == "(") round.Push(res.Count);
            else if (t == "[") square.Push(res.Count);
            else if (weight.Success && round.Count > 0 && double.TryParse(weight.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out double w))
                Multiply(round.Pop(), w);
            else if (t == ")" && round.Count > 0) Multiply(round.Pop(), RoundMultiplier);
            else if (t == "]" && square.Count > 0) Multiply(square.Pop(), SquareMultiplier);
            else
            {
                var parts = Break().Split(t);
                for (int i = 0; i < parts.Length; i++)
                {
                    if (i > 0) res.Add(("BREAK", -1));
                    res.Add((parts[i], 1.0));
                }
            }
        }
        // Unclosed brackets apply to the end, innermost first as A1111 pops them in list order.
        foreach (int pos in round.Reverse()) Multiply(pos, RoundMultiplier);
        foreach (int pos in square.Reverse()) Multiply(pos, SquareMultiplier);
        if (res.Count == 0) res.Add(("", 1.0));
        for (int i = 0; i + 1 < res.Count;)
        {
            if (res[i].Weight == res[i + 1].Weight)
            {
                res[i] = (res[i].Text + res[i + 1].Text, res[i].Weight);
                res.RemoveAt(i + 1);
            }
            else i++;
        }
        return res.Select(r => new WeightedText(r.Text, r.Weight)).ToList();
    }

    /// <summary>The prompt without weight syntax (for T5, which gets no weights): the parsed texts joined; BREAK
    /// becomes a space. A prompt without syntax comes back unchanged.</summary>
    public static string Strip(string text)
    {
        var sb = new StringBuilder();
        foreach (var part in Parse(text)) sb.Append(part.IsBreak ? " " : part.Text);
        return sb.ToString();
    }

    /// <summary>Whether the prompt uses any weight syntax (brackets, escapes or BREAK).</summary>
    public static bool HasSyntax(string text) => text.IndexOfAny(['(', ')', '[', ']', '\\']) >= 0 || Break().IsMatch(text);
}
