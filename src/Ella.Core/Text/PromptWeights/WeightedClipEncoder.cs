using Ella.Modules.Clip;
using static TorchSharp.torch;

namespace Ella.Text.PromptWeights;

/// <summary>
/// CLIP conditions with Automatic1111's prompt weights: each 77-token chunk (model_max_length tokens) is encoded, its hidden states are
/// multiplied by their tokens' weights, and the chunk is rescaled to its original mean; chunks are concatenated along
/// the token axis (77·k tokens). A prompt without weights and within 75 tokens gives exactly SD's plain encoding.
/// </summary>
public static class WeightedClipEncoder
{
    public static int ChunkCount(ClipTokenizer tokenizer, string prompt) => ClipPromptChunks.Tokenize(tokenizer, prompt).Count;

    /// <summary>[1, 77·max(chunks, minChunks), width]; missing chunks are empty-prompt chunks (as A1111 pads cond/uncond).</summary>
    public static Tensor Encode(ClipTextModel model, ClipTokenizer tokenizer, string prompt, int minChunks, Device device)
    {
        using var scope = NewDisposeScope();
        var chunks = ClipPromptChunks.Tokenize(tokenizer, prompt);
        while (chunks.Count < minChunks) chunks.Add(ClipPromptChunks.Empty(tokenizer));
        var outputs = new List<Tensor>();
        foreach (var chunk in chunks)
        {
            var ids = tensor(chunk.Ids.Select(i => (long)i).ToArray()).reshape(1, -1).to(device);
            var z = model.forward(ids);
            if (!chunk.Unweighted)
            {
                var original = z.mean();
                var weights = tensor(chunk.Weights).to(device).to_type(z.dtype).reshape(1, -1, 1);
                z = z * weights;
                z = z * (original / z.mean());
            }
            outputs.Add(z);
        }
        return cat(outputs.ToArray(), 1).MoveToOuterDisposeScope();
    }
}
