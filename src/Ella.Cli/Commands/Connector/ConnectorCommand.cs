using System.CommandLine;

namespace Ella.Cli.Commands.Connector;

/// <summary><c>ella connector init</c>: connector utilities.</summary>
public static class ConnectorCommand
{
    public static Command Create(CliContext ctx)
    {
        var command = new Command("connector", "ELLA connectors: write a freshly initialised one of any design (paper Tab. 6)");
        command.Subcommands.Add(ConnectorInitCommand.Create(ctx));
        return command;
    }
}
