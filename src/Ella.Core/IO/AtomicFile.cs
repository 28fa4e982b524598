namespace Ella.IO;

/// <summary>
/// Writes a file so that readers only ever see the old file or the complete new one: the bytes go to a temporary file
/// in the same folder, which is flushed and then renamed over the target. A failure (or Ctrl-C) leaves no partial file;
/// the temporary file is removed.
/// </summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write, bool overwrite = true)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        if (!overwrite && File.Exists(full)) throw new EllaException($"{path}: the file exists and may not be replaced (--no-overwrite)");
        string tmp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    public static void WriteAllBytes(string path, byte[] bytes, bool overwrite = true) => Write(path, s => s.Write(bytes), overwrite);

    public static void WriteAllText(string path, string text, bool overwrite = true) =>
        Write(path, s => { using var w = new StreamWriter(s, new System.Text.UTF8Encoding(false), leaveOpen: true); w.Write(text); }, overwrite);
}
