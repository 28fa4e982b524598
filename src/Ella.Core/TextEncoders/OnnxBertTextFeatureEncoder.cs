using Ella.Text;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace Ella.TextEncoders;

/// <summary>
/// A frozen BERT-family sentence model (all-MiniLM-L6-v2, arctic-embed-xs) run by ONNX Runtime on the CPU: the
/// features are its <c>last_hidden_state</c>, [1, L, 384], copied into a float32 TorchSharp tensor (then moved to the
/// requested dtype and device). Tokens come from <see cref="BertWordPieceTokenizer"/>; token_type_ids are all 0.
/// ONNX Runtime's threads do not spin after a call, so they leave the cores to libtorch during denoising.
/// </summary>
public sealed class OnnxBertTextFeatureEncoder : ITextFeatureEncoder
{
    const string OutputName = "last_hidden_state";

    readonly InferenceSession _session;
    readonly ScalarType _dtype;
    readonly Device _device;

    public string Name { get; }
    public int HiddenSize { get; }
    public BertWordPieceTokenizer Tokenizer { get; }

    OnnxBertTextFeatureEncoder(InferenceSession session, BertWordPieceTokenizer tokenizer, string name, ScalarType dtype, Device? device)
    {
        _session = session;
        Tokenizer = tokenizer;
        Name = name;
        _dtype = dtype;
        _device = device ?? CPU;
        if (!session.OutputMetadata.TryGetValue(OutputName, out var output) || output.Dimensions.Length != 3 || output.Dimensions[2] <= 0)
        {
            session.Dispose();
            throw new EllaException($"{name}: the ONNX model has no output '{OutputName}' of shape [B, L, H]");
        }
        HiddenSize = output.Dimensions[2];
    }

    /// <summary>The model a NuGet package embeds (see <see cref="EmbeddedBertModel"/>).</summary>
    /// <param name="threads">ONNX Runtime intra-op threads; null follows libtorch's thread count.</param>
    public static OnnxBertTextFeatureEncoder FromEmbedded(EmbeddedBertModel model, ScalarType dtype = ScalarType.Float32, Device? device = null, int? threads = null)
    {
        using var vocab = model.OpenVocabulary();
        var tokenizer = new BertWordPieceTokenizer(vocab, model.ModelMaxLength);
        return new(Session(model.ReadModel(), model.DisplayName, threads), tokenizer, model.DisplayName, dtype, device);
    }

    /// <summary>A folder with <c>model.onnx</c> and <c>vocab.txt</c> (the same layout the packages embed).</summary>
    public static OnnxBertTextFeatureEncoder FromFolder(string folder, int modelMaxLength, ScalarType dtype = ScalarType.Float32, Device? device = null, int? threads = null)
    {
        string onnx = Path.Combine(folder, "model.onnx");
        if (!File.Exists(onnx)) throw new EllaException($"{onnx}: ONNX model not found");
        var tokenizer = BertWordPieceTokenizer.FromFile(folder, modelMaxLength);
        return new(Session(File.ReadAllBytes(onnx), onnx, threads), tokenizer, folder, dtype, device);
    }

    static InferenceSession Session(byte[] model, string name, int? threads)
    {
        using var options = new SessionOptions { IntraOpNumThreads = threads ?? get_num_threads(), InterOpNumThreads = 1 };
        options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        try { return new InferenceSession(model, options); }
        catch (OnnxRuntimeException e) { throw new EllaException($"{name}: not a loadable ONNX model ({e.Message})", e); }
    }

    public EncodedText Encode(string prompt, TokenLength mode, int maxLength)
    {
        var tok = Tokenizer.Encode(prompt, mode, maxLength);
        string? dropped = tok.Truncated ? Tokenizer.DroppedText(prompt, tok.RealLength) : null;
        return new EncodedText(LastHiddenState(tok.Ids, tok.AttentionMask), tok.Truncated, tok.UntruncatedLength, dropped);
    }

    /// <summary>The model's last hidden state for one sequence of ids (and its attention mask), [1, L, H].</summary>
    public Tensor LastHiddenState(IReadOnlyList<int> ids, IReadOnlyList<int> attentionMask)
    {
        int length = ids.Count;
        long[] shape = [1, length];
        using var inputIds = OrtValue.CreateTensorValueFromMemory(ids.Select(i => (long)i).ToArray(), shape);
        using var mask = OrtValue.CreateTensorValueFromMemory(attentionMask.Select(i => (long)i).ToArray(), shape);
        using var types = OrtValue.CreateTensorValueFromMemory(new long[length], shape);
        var inputs = new Dictionary<string, OrtValue> { ["input_ids"] = inputIds, ["attention_mask"] = mask, ["token_type_ids"] = types };
        using var run = new RunOptions();
        using var outputs = _session.Run(run, inputs, [OutputName]);
        var data = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        var features = tensor(data, [1, length, HiddenSize], ScalarType.Float32);
        if (_dtype == ScalarType.Float32 && _device.type == TorchSharp.DeviceType.CPU) return features;
        using (features) return features.to(_dtype, _device);
    }

    public void Dispose() => _session.Dispose();
}
