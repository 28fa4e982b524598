using Ella.Cli;

// Starts over once with glibc's allocator tuned (freed memory kept for reuse; see MallocTuning): a 512² UNet step
// otherwise spends a third of its time faulting fresh pages in.
Ella.Native.MallocTuning.RestartWithTunables();
return EllaCli.Run(args, Console.Out, Console.Error);
