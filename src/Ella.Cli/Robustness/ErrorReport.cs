namespace Ella.Cli.Robustness;

/// <summary>
/// Sorts what reached the top of a command: the user's problem (exit 2, one line) or an internal error (exit 1).
/// User problems are <see cref="EllaException"/>s, and the environment refusing a path the user gave (I/O errors,
/// permissions) or running out of memory despite the estimate.
/// </summary>
public static class ErrorReport
{
    /// <summary>The exception that matters inside wrappers (a single-task aggregate, reflection).</summary>
    public static Exception Unwrap(Exception e)
    {
        while (true)
        {
            if (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerExceptions[0];
            else if (e is System.Reflection.TargetInvocationException { InnerException: { } inner }) e = inner;
            else return e;
        }
    }

    /// <summary>One line for the user, or null for an internal error.</summary>
    public static string? UserMessage(Exception e)
    {
        string? message = e switch
        {
            EllaException => e.Message,
            IOException or UnauthorizedAccessException => e.Message,
            // System.IO refusing a path argument: an empty path, or one with a NUL character.
            ArgumentException { ParamName: "path" or "path1" or "path2" or "fileName" or "sourceFileName" or "destFileName" or "destinationFileName" }
                => $"a path given is empty or invalid ({e.Message})",
            OutOfMemoryException or InsufficientMemoryException => $"out of memory ({e.Message}); lower --width/--height/--batch, or use --vae-tiling or --dtype bf16",
            _ when IsAllocationFailure(e.Message) => $"out of memory: {FirstLine(e.Message)}; lower --width/--height/--batch, or use --vae-tiling or --dtype bf16",
            _ => null,
        };
        return message == null ? null : OneLine(message);
    }

    static bool IsAllocationFailure(string m) =>
        m.Contains("not enough memory", StringComparison.OrdinalIgnoreCase) || m.Contains("can't allocate memory", StringComparison.OrdinalIgnoreCase)
        || m.Contains("DefaultCPUAllocator", StringComparison.Ordinal);

    static string FirstLine(string s) => s.Split('\n')[0].Trim();

    /// <summary>Newlines and other control characters become spaces: an error is one line.</summary>
    public static string OneLine(string s) => string.Concat(s.Select(c => char.IsControl(c) ? ' ' : c)).Trim();
}
