namespace Ella;

/// <summary>
/// A problem with the user's input (a file, key, flag or value) that the user can fix. The CLI prints the message as one
/// line and exits with code 2; it never shows a stack trace for these.
/// </summary>
public class EllaException : Exception
{
    public EllaException(string message) : base(message) { }
    public EllaException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>A checkpoint file or folder that cannot be read, or does not fit the model it is loaded into.</summary>
public sealed class CheckpointException : EllaException
{
    public CheckpointException(string message) : base(message) { }
    public CheckpointException(string message, Exception inner) : base(message, inner) { }
}
