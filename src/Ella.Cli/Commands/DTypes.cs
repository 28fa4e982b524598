using Ella.Hardware;
using static TorchSharp.torch;

namespace Ella.Cli.Commands;

/// <summary>The concrete dtype names used on the command line (<c>auto</c> is resolved by <see cref="DTypeChoice.Resolve"/>).</summary>
public static class DTypes
{
    public static ScalarType Parse(string name) => DTypeChoice.Parse(name);

    public static string Name(ScalarType t) => DTypeChoice.Name(t);
}
