using System.CommandLine;
using Ella.Cli.Commands;

namespace Ella.Cli;

/// <summary>
/// The <c>ella</c> command line. Exit codes: 0 success, 2 a problem with the input (bad flag, file, key or value: one
/// clear line on stderr), 1 an unexpected internal error (one line too; set ELLA_DEBUG=1 for the stack trace).
/// </summary>
public static class EllaCli
{
    public const int ExitOk = 0;
    public const int ExitInternal = 1;
    public const int ExitUsage = 2;
    public const int ExitInterrupted = 130;

    /// <param name="interrupt">cancels the command as Ctrl-C does (tests); Ctrl-C itself is always wired</param>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken interrupt = default)
    {
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(interrupt);
        // The first Ctrl-C asks the command to stop between steps; a second one ends the process at once.
        ConsoleCancelEventHandler onCtrlC = (_, e) => { e.Cancel = !cancel.IsCancellationRequested; cancel.Cancel(); };
        Console.CancelKeyPress += onCtrlC;
        try { return RunCommand(args, stdout, stderr, cancel.Token); }
        finally { Console.CancelKeyPress -= onCtrlC; }
    }

    static int RunCommand(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken cancel)
    {
        var root = new RootCommand("EllaSharp: ELLA (LLM-conditioned Stable Diffusion) for .NET");
        var context = new CliContext(stdout, stderr, cancel);
        root.Subcommands.Add(InspectCommand.Create(context));
        root.Subcommands.Add(TokenizeCommand.Create(context));
        root.Subcommands.Add(GenerateCommand.Create(context));
        root.Subcommands.Add(CompareCommand.Create(context));
        root.Subcommands.Add(Commands.Dpg.DpgCommand.Create(context));
        root.Subcommands.Add(BenchCommand.Create(context));
        root.Subcommands.Add(Commands.World.WorldCommand.Create(context));
        root.Subcommands.Add(InfoCommand.Create(context));
        root.Subcommands.Add(Commands.Connector.ConnectorCommand.Create(context));
        root.Subcommands.Add(Commands.Train.TrainCommand.Create(context));
        root.Subcommands.Add(ServeCommand.Create(context));

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var e in parse.Errors) stderr.WriteLine($"error: {e.Message}");
            stderr.WriteLine("Run 'ella --help' (or 'ella COMMAND --help') for usage.");
            return ExitUsage;
        }
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false };
        try
        {
            return parse.Invoke(config);
        }
        catch (Exception thrown)
        {
            var e = Robustness.ErrorReport.Unwrap(thrown);
            if (e is OperationCanceledException)
            {
                stderr.WriteLine("interrupted");
                return ExitInterrupted;
            }
            if (Robustness.ErrorReport.UserMessage(e) is { } message)
            {
                stderr.WriteLine($"error: {message}");
                return ExitUsage;
            }
            stderr.WriteLine($"error: internal error ({e.GetType().Name}): {e.Message}");
            if (Environment.GetEnvironmentVariable("ELLA_DEBUG") == "1") stderr.WriteLine(e);
            else stderr.WriteLine("Set ELLA_DEBUG=1 to see the stack trace, and please report it.");
            return ExitInternal;
        }
    }
}

/// <summary>Where a command writes; tests pass their own writers.</summary>
public sealed record CliContext(TextWriter Out, TextWriter Error, CancellationToken Interrupt = default);
