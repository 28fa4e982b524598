using System.Text;

namespace Ella.Cli.Robustness;

/// <summary><c>--prompt-file</c>: a UTF-8 text file (invalid bytes become U+FFFD), at most 16 MB.</summary>
public static class PromptFiles
{
    public const long MaxBytes = 16L << 20;

    public static string Read(string path, string option = "--prompt-file")
    {
        if (Directory.Exists(path)) throw new EllaException($"{option} {path}: is a folder, not a text file");
        if (!File.Exists(path)) throw new EllaException($"{option} {path}: file not found");
        long size = new FileInfo(path).Length;
        if (size > MaxBytes) throw new EllaException($"{option} {path}: {size >> 20} MB is too long for a prompt (at most {MaxBytes >> 20} MB)");
        return new UTF8Encoding(false, false).GetString(File.ReadAllBytes(path)).Trim();
    }
}
