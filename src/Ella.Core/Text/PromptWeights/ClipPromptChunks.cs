namespace Ella.Text.PromptWeights;

/// <summary>One 77-token CLIP chunk: start token, 75 prompt tokens (padded), end token, and a weight per token.</summary>
public sealed record ClipChunk(int[] Ids, float[] Weights)
{
    public bool Unweighted => Weights.All(w => w == 1f);
}

/// <summary>
/// Automatic1111's prompt chunking for CLIP (sd_hijack_clip.py, tokenize_line): each weighted piece is tokenised on its
/// own; tokens fill chunks of 75 (plus start and end), padded with the end token; a chunk that fills up within
/// <c>commaBacktrack</c> tokens after a comma moves the text after that comma to the next chunk; BREAK closes a chunk.
/// </summary>
public static class ClipPromptChunks
{
    public const int ChunkLength = 75;
    public const int DefaultCommaBacktrack = 20;

    public static List<ClipChunk> Tokenize(ClipTokenizer tokenizer, string prompt, int commaBacktrack = DefaultCommaBacktrack)
    {
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
            while (chunkIds.Count < ChunkLength + 2) chunkIds.Add(pad);
            var chunkWeights = new List<float> { 1f };
            chunkWeights.AddRange(weights);
            while (chunkWeights.Count < ChunkLength + 2) chunkWeights.Add(1f);
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
                else if (commaBacktrack != 0 && ids.Count == ChunkLength && lastComma != -1 && ids.Count - lastComma <= commaBacktrack)
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
                if (ids.Count == ChunkLength) NextChunk();
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
