using System.CommandLine;

namespace Ella.Cli.Commands.Dpg;

/// <summary><c>ella dpg score | stats | generate</c>: the DPG-Bench toolkit.</summary>
public static class DpgCommand
{
    public static Command Create(CliContext ctx)
    {
        var command = new Command("dpg", "DPG-Bench: generate the benchmark images, score them with a VQA judge, prompt statistics");
        command.Subcommands.Add(DpgScoreCommand.Create(ctx));
        command.Subcommands.Add(DpgStatsCommand.Create(ctx));
        command.Subcommands.Add(DpgGenerateCommand.Create(ctx));
        return command;
    }
}
