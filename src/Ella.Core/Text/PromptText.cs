using System.Text;

namespace Ella.Text;

/// <summary>
/// What a prompt may contain before it reaches a tokenizer: control characters (NUL, escape codes, …) become spaces,
/// except tab and newline, and lone UTF-16 surrogates (invalid text that cannot be encoded) become U+FFFD. Everything
/// else — right-to-left text, emoji, any script — is kept as it is.
/// </summary>
public static class PromptText
{
    public static string Clean(string? prompt)
    {
        if (string.IsNullOrEmpty(prompt)) return "";
        StringBuilder? sb = null;
        for (int i = 0; i < prompt.Length; i++)
        {
            char c = prompt[i];
            char? replacement = null;
            if (char.IsHighSurrogate(c))
            {
                if (i + 1 < prompt.Length && char.IsLowSurrogate(prompt[i + 1]))
                {
                    sb?.Append(c).Append(prompt[i + 1]);
                    i++;
                    continue;
                }
                replacement = '\uFFFD';
            }
            else if (char.IsLowSurrogate(c)) replacement = '\uFFFD';
            else if (char.IsControl(c) && c != '\n' && c != '\t') replacement = ' ';
            if (replacement != null && sb == null) sb = new StringBuilder(prompt.Length).Append(prompt, 0, i);
            sb?.Append(replacement ?? c);
        }
        return sb?.ToString() ?? prompt;
    }

    /// <summary>No token of either tokenizer covers more characters than this (runs of spaces collapse before).</summary>
    public const int MaxCharsPerToken = 64;

    /// <summary>
    /// The start of <paramref name="text"/> that can hold <paramref name="tokens"/> tokens: a longer text (a 1 MB
    /// prompt) is cut before tokenizing, since everything past it would be truncated anyway. Never splits a surrogate pair.
    /// </summary>
    public static string Prefix(string text, int tokens)
    {
        long keep = (long)Math.Max(tokens, 1) * MaxCharsPerToken;
        if (text.Length <= keep) return text;
        int n = (int)keep;
        if (char.IsHighSurrogate(text[n - 1])) n--;
        return text[..n];
    }
}
