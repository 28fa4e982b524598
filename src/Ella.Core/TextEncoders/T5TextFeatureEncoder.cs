using Ella.Modules.T5;
using Ella.Text;
using static TorchSharp.torch;

namespace Ella.TextEncoders;

/// <summary>FLAN-T5's encoder (last hidden state) with its SentencePiece tokenizer, as ELLA's authors use it.</summary>
public sealed class T5TextFeatureEncoder : ITextFeatureEncoder
{
    readonly T5EncoderModel _model;
    readonly T5Tokenizer _tokenizer;
    readonly Device _device;

    public string Name { get; }
    public int HiddenSize => _model.Config.DModel;

    public T5TextFeatureEncoder(T5EncoderModel model, T5Tokenizer tokenizer, string name, Device? device = null)
    {
        _model = model;
        _tokenizer = tokenizer;
        Name = name;
        _device = device ?? CPU;
    }

    /// <summary>Loads the encoder and tokenizer from a transformers folder (or cached repo id already resolved).</summary>
    public static T5TextFeatureEncoder FromPretrained(string path, ScalarType dtype = ScalarType.Float32, Device? device = null) =>
        new(T5EncoderModel.FromPretrained(path, dtype, device), T5Tokenizer.FromPretrained(path), path, device);

    public EncodedText Encode(string prompt, TokenLength mode, int maxLength)
    {
        var tok = _tokenizer.Encode(prompt, mode, maxLength, capFlexible: true);
        string? dropped = tok.Truncated ? _tokenizer.DroppedText(prompt, maxLength) : null;
        using var noGrad = no_grad();
        using var ids = tensor(tok.Ids.Select(i => (long)i).ToArray()).reshape(1, -1).to(_device);
        using var mask = tensor(tok.AttentionMask.Select(i => (long)i).ToArray()).reshape(1, -1).to(_device);
        return new EncodedText(_model.forward(ids, mask), tok.Truncated, tok.UntruncatedLength, dropped);
    }

    public void Dispose() => _model.Dispose();
}
