namespace Ella.Text;

/// <summary>Token ids and attention mask of one text, as a tokenizer returns them.</summary>
public sealed record TokenizedText(int[] Ids, int[] AttentionMask, bool Truncated, int UntruncatedLength)
{
    public int Length => Ids.Length;
    /// <summary>Number of real (unpadded) tokens.</summary>
    public int RealLength => AttentionMask.Count(m => m != 0);
}

/// <summary>How prompts are padded for the text encoder.</summary>
public enum TokenLength
{
    /// <summary>No padding or truncation: each prompt keeps its own length.</summary>
    Flexible,
    /// <summary>Padded or truncated to max_length (128 for ELLA), with the end token kept last.</summary>
    Fixed,
}
