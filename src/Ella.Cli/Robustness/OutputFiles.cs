namespace Ella.Cli.Robustness;

/// <summary>
/// Output paths checked before any model is loaded: not empty, not a folder, their folder created, and with
/// <c>--no-overwrite</c> not an existing file. The files themselves are written atomically (temporary file, then rename).
/// </summary>
public static class OutputFiles
{
    public static void Prepare(IEnumerable<string> paths, bool noOverwrite, string option = "--output")
    {
        foreach (var path in paths)
        {
            if (string.IsNullOrWhiteSpace(path)) throw new EllaException($"{option}: an empty path");
            if (path.IndexOf('\0') >= 0) throw new EllaException($"{option}: the path contains a NUL character");
            string full = Path.GetFullPath(path);
            if (Directory.Exists(full)) throw new EllaException($"{option} {path}: is a folder; give a file name, e.g. {Path.Combine(path, "image.png")}");
            if (noOverwrite && File.Exists(full)) throw new EllaException($"{option} {path}: the file exists and --no-overwrite is set");
            string dir = Path.GetDirectoryName(full)!;
            try { Directory.CreateDirectory(dir); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new EllaException($"{option} {path}: cannot create the folder {dir} ({e.Message})", e);
            }
        }
    }
}
