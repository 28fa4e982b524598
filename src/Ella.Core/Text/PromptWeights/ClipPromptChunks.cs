namespace Ella.Text.PromptWeights;

/// <summary>One CLIP chunk of the tokenizer's model_max_length (77 for SD1.x): start token, the prompt's tokens (padded), end token, and a weight per token.</summary>
public sealed record ClipChunk(int[] Ids, float[] Weights)
{
    public bool Unweighted => Weights.All(w => w == 1f);
}

/// <summary>
/// Automatic1111's prompt chunking for CLIP (sd_hijack_clip.py, tokenize_line): each weighted piece is tokenised on its
/// own; tokens fill chunks of 75 (plus start and end; in general model_max_length − 2), padded with the end token; a chunk that fills up within
/// <c>commaBacktrack</c> tokens after a comma moves the text after that comma to the next chunk; BREAK closes a chunk.
/// </summary>
public static class ClipPromptChunks
{
    /// <summary>Prompt tokens per chunk: model_max_length − 2 (75 for SD1.x's 77; a CLIP with a shorter context, as the shapes world's can be, gets shorter chunks).</summary>
    public static int ChunkLength(ClipTokenizer tokenizer) => tokenizer.ModelMaxLength - 2;
    public const int DefaultCommaBacktrack = 20;

    public static List<ClipChunk> Tokenize(ClipTokenizer tokenizer, string prompt, int commaBacktrack = DefaultCommaBacktrack)
    {
        int chunkLength = ChunkLength(tokenizer);
        int start = tokenizer.BosId, end = tokenizer.EosId, pad = tokenizer.PadId;
        int comma = tokenizer.EncodeIds(",") is [_, var c, _] ? c : -1;
        var chunks = new List<ClipChunk>();
        var ids = new List<int>();
        var weights = new List<float>();
        int lastComma = -1;

        void NextChunk()
        {
            // The end token follows the text, then padding (the end token for SD1.x, whose pad is <|endoftext|>).
            var chunkIds = new List<int> { start };
            chunkIds.AddRange(ids);
            chunkIds.Add(end);
            while (chunkIds.Count < chunkLength + 2) chunkIds.Add(pad);
            var chunkWeights = new List<float> { 1f };
            chunkWeights.AddRange(weights);
            while (chunkWeights.Count < chunkLength + 2) chunkWeights.Add(1f);
            chunks.Add(new ClipChunk(chunkIds.ToArray(), chunkWeights.ToArray()));
            ids = new List<int>();
            weights = new List<float>();
            lastComma = -1;
        }

        foreach (var piece in PromptAttention.Parse(prompt))
        {
            if (piece.IsBreak) { NextChunk(); continue; }
            var tokens = tokenizer.EncodeIds(piece.Text)[1..^1];
            foreach (int token in tokens)
            {
                if (token == comma) lastComma = ids.Count;
                else if (commaBacktrack != 0 && ids.Count == chunkLength && lastComma != -1 && ids.Count - lastComma <= commaBacktrack)
                {
                    int breakAt = lastComma + 1;
                    var movedIds = ids.GetRange(breakAt, ids.Count - breakAt);
                    var movedWeights = weights.GetRange(breakAt, weights.Count - breakAt);
                    ids.RemoveRange(breakAt, ids.Count - breakAt);
                    weights.RemoveRange(breakAt, weights.Count - breakAt);
                    NextChunk();
                    ids = movedIds;
                    weights = movedWeights;
                }
                if (ids.Count == chunkLength) NextChunk();
                ids.Add(token);
                weights.Add((float)piece.Weight);
            }
        }
        if (ids.Count > 0 || chunks.Count == 0) NextChunk();
        return chunks;
    }

    /// <summary>The chunk an empty prompt gives (used to pad a shorter condition to the same number of chunks).</summary>
    public static ClipChunk Empty(ClipTokenizer tokenizer) => Tokenize(tokenizer, "")[0];
}
