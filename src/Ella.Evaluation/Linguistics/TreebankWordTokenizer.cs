using System.Text.RegularExpressions;

namespace Ella.Evaluation.Linguistics;

/// <summary>
/// NLTK's <c>word_tokenize</c>: a sentence split, then NLTK's improved Treebank word tokenizer (NLTKWordTokenizer,
/// nltk 3.8) on each sentence — quotes, punctuation, brackets, double dashes, clitics, MacIntyre's contractions.
/// The sentence split approximates Punkt without its trained model (as the fixtures' reference run did): a break
/// after '.', '!' or '?' (and any closing quotes or brackets) followed by whitespace.
/// </summary>
public static class TreebankWordTokenizer
{
    const RegexOptions O = RegexOptions.CultureInvariant;

    static readonly (Regex, string)[] StartingQuotes =
    [
        (new Regex("([«“‘„]|[`]+)", O), " $1 "),
        (new Regex("^\"", O), "``"),
        (new Regex("(``)", O), " $1 "),
        (new Regex("([ \\(\\[{<])(\"|'{2})", O), "$1 `` "),
        (new Regex(@"(?i)(')(?!re|ve|ll|m|t|s|d|n)(\w)\b", O), "$1 $2"),
    ];

    static readonly (Regex, string)[] EndingQuotes =
    [
        (new Regex("([»”’])", O), " $1 "),
        (new Regex("''", O), " '' "),
        (new Regex("\"", O), " '' "),
        (new Regex("([^' ])('[sS]|'[mM]|'[dD]|') ", O), "$1 $2 "),
        (new Regex("([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", O), "$1 $2 "),
    ];

    static readonly (Regex, string)[] Punctuation =
    [
        (new Regex("([^\\.])(\\.)([\\]\\)}>\"'»”’ ]*)\\s*$", O), "$1 $2 $3 "),
        (new Regex(@"([:,])([^\d])", O), " $1 $2"),
        (new Regex("([:,])$", O), " $1 "),
        (new Regex(@"\.{2,}", O), " $0 "),
        (new Regex("[;@#$%&]", O), " $0 "),
        (new Regex("([^\\.])(\\.)([\\]\\)}>\"']*)\\s*$", O), "$1 $2$3 "),
        (new Regex("[?!]", O), " $0 "),
        (new Regex("([^'])' ", O), "$1 ' "),
        (new Regex("[*]", O), " $0 "),
    ];

    static readonly Regex ParensBrackets = new(@"[\]\[\(\)\{\}\<\>]", O);
    static readonly Regex DoubleDashes = new("--", O);

    static readonly Regex[] Contractions2 =
    [
        new(@"(?i)\b(can)(not)\b", O), new(@"(?i)\b(d)('ye)\b", O), new(@"(?i)\b(gim)(me)\b", O), new(@"(?i)\b(gon)(na)\b", O),
        new(@"(?i)\b(got)(ta)\b", O), new(@"(?i)\b(lem)(me)\b", O), new(@"(?i)\b(more)('n)\b", O), new(@"(?i)\b(wan)(na)(?=\s)", O),
    ];

    static readonly Regex[] Contractions3 = [new(@"(?i) ('t)(is)\b", O), new(@"(?i) ('t)(was)\b", O)];

    static readonly Regex SentenceBreak = new("(?<=[.!?][\"')\\]}’”»]*)\\s+", O);

    static readonly char[] Whitespace = [' ', '\t', '\n', '\r', '\f', '\v', '\u00a0', '\u2028', '\u2029', '\u3000'];

    /// <summary>nltk.word_tokenize(text).</summary>
    public static List<string> WordTokenize(string text)
    {
        var tokens = new List<string>();
        foreach (var sentence in SentenceBreak.Split(text.Trim()))
            if (sentence.Length > 0) tokens.AddRange(Tokenize(sentence));
        return tokens;
    }

    /// <summary>NLTKWordTokenizer.tokenize on one sentence.</summary>
    public static IEnumerable<string> Tokenize(string text)
    {
        foreach (var (re, sub) in StartingQuotes) text = re.Replace(text, sub);
        foreach (var (re, sub) in Punctuation) text = re.Replace(text, sub);
        text = ParensBrackets.Replace(text, " $0 ");
        text = DoubleDashes.Replace(text, " -- ");
        text = " " + text + " ";
        foreach (var (re, sub) in EndingQuotes) text = re.Replace(text, sub);
        foreach (var re in Contractions2) text = re.Replace(text, " $1 $2 ");
        foreach (var re in Contractions3) text = re.Replace(text, " $1 $2 ");
        return text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
    }
}
