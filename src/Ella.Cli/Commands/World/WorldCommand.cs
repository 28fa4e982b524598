using System.CommandLine;

namespace Ella.Cli.Commands.World;

/// <summary><c>ella world sample | bench</c>: the shapes world (scenes, captions, question graphs).</summary>
public static class WorldCommand
{
    public static Command Create(CliContext ctx)
    {
        var command = new Command("world", "The shapes world: sample training images with captions, write the mini DPG-Bench");
        command.Subcommands.Add(WorldSampleCommand.Create(ctx));
        command.Subcommands.Add(WorldBenchCommand.Create(ctx));
        command.Subcommands.Add(WorldTrainCommand.Create(ctx));
        command.Subcommands.Add(WorldEvalCommand.Create(ctx));
        return command;
    }
}
