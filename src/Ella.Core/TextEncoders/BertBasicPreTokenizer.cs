using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Ella.TextEncoders;

/// <summary>
/// The split of transformers' <c>BasicTokenizer</c> after normalisation: whitespace separates words, and every
/// punctuation character is a word of its own, where punctuation is any Unicode P* character or any ASCII symbol
/// (<c>!"#$%&amp;'()*+,-./:;&lt;=&gt;?@[\]^_`{|}~</c>), as <c>_is_punctuation</c> defines it. Every other run of
/// non-space characters (letters, digits, symbols such as emoji) is a word, which WordPiece may turn into [UNK].
/// Microsoft.ML.Tokenizers' default BERT split (<c>\w+|\p{P}</c>) drops symbols such as <c>+ $ = &lt; &gt; ^ | ~</c>
/// and emoji and keeps <c>_</c> inside words; the model was trained on transformers' split, so this one is used.
/// The lower-cased special tokens ([cls], [sep], [pad], [unk], [mask]) stay whole, as they do in the library's split.
/// </summary>
public sealed partial class BertBasicPreTokenizer : PreTokenizer
{
    const string Punctuation = @"!-/:-@\[-`{-~\p{P}";

    [GeneratedRegex(@"\[(?:cls|sep|pad|unk|mask)\]|[" + Punctuation + @"]|[^\s" + Punctuation + @"]+")]
    private static partial Regex Split();

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text)
    {
        foreach (Match m in Split().Matches(text)) yield return (m.Index, m.Length);
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => PreTokenize(text.ToString());
}
