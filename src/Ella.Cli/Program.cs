using Ella.Cli;

return EllaCli.Run(args, Console.Out, Console.Error);
