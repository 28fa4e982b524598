using Ella.Tests.Infrastructure;

namespace Ella.Tests.Training.Data;

/// <summary>The small files training tests share: the tiny FLAN-T5 as a model folder, and image/caption pairs.</summary>
internal static class TinyTrainingFiles
{
    /// <summary>The tiny T5 (config, weights, SentencePiece model) copied once into <c>dir/t5</c>.</summary>
    public static string T5(string dir)
    {
        string t5 = Path.Combine(dir, "t5");
        if (Directory.Exists(t5)) return t5;
        Directory.CreateDirectory(t5);
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Fixtures.PathOf("text", "t5", f), Path.Combine(t5, f));
        File.Copy(Fixtures.PathOf("text", "t5-tokenizer", "spiece.model"), Path.Combine(t5, "spiece.model"));
        return t5;
    }

    /// <summary>
    /// Kohya-style pairs written once into <c>dir/data</c>: a red square and a gradient, then <paramref name="extra"/>
    /// (name, file bytes, caption).
    /// </summary>
    public static string Captions(string dir, params (string Name, byte[] Bytes, string Caption)[] extra)
    {
        string d = Path.Combine(dir, "data");
        if (Directory.Exists(d)) return d;
        Directory.CreateDirectory(d);
        (string, byte[], string)[] common =
        [
            ("a.png", TestImages.Png(20, 16), "a red square"),
            ("b.png", TestImages.Gradient(16, 24, SkiaSharp.SKEncodedImageFormat.Png), "a colourful gradient with many shades"),
        ];
        foreach (var (name, bytes, caption) in common.Concat(extra))
        {
            File.WriteAllBytes(Path.Combine(d, name), bytes);
            File.WriteAllText(Path.Combine(d, Path.ChangeExtension(name, ".txt")), caption);
        }
        return d;
    }
}
