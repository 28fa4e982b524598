using System.CommandLine;
using Ella.Configs;
using Ella.Modules.Ella;
using Ella.Native;
using static TorchSharp.torch;

namespace Ella.Cli.Commands.Connector;

/// <summary>
/// <c>ella connector init --type tsc|mlp|resampler|adaln-zero --input-dim D --width W --blocks N --heads H --latents L
/// [--time-channel C --time-embed-dim T] [--seed S] -o FILE</c>: a fresh connector with the authors' initialisation,
/// saved as safetensors with its config in the metadata (loadable by <c>ella generate --ella</c> and <c>ella train --init</c>).
/// </summary>
public static class ConnectorInitCommand
{
    public static Command Create(CliContext ctx)
    {
        var type = new Option<string>("--type") { Description = string.Join(" | ", Connectors.Types), DefaultValueFactory = _ => Connectors.Tsc };
        type.AcceptOnlyFromAmong(Connectors.Types);
        var inputDim = new Option<int>("--input-dim") { Description = "Text feature width (FLAN-T5-XL and TinyLlama: 2048)", DefaultValueFactory = _ => 2048 };
        var width = new Option<int>("--width") { Description = "Connector width = the UNet's cross_attention_dim (SD1.5: 768)", DefaultValueFactory = _ => 768 };
        var blocks = new Option<int>("--blocks") { Description = "Perceiver blocks (tsc, resampler, adaln-zero)", DefaultValueFactory = _ => 6 };
        var heads = new Option<int>("--heads") { Description = "Attention heads", DefaultValueFactory = _ => 8 };
        var latents = new Option<int>("--latents") { Description = "Condition tokens (learned latents)", DefaultValueFactory = _ => 64 };
        var timeChannel = new Option<int>("--time-channel") { Description = "Sinusoidal timestep channels (tsc, adaln-zero)", DefaultValueFactory = _ => 320 };
        var timeEmbedDim = new Option<int?>("--time-embed-dim") { Description = "Timestep embedding width (default: --width)" };
        var seed = new Option<long>("--seed") { Description = "Seed of the initialisation", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--output", "-o") { Description = "Output .safetensors file", Required = true };
        var command = new Command("init", "Write a freshly initialised connector") { type, inputDim, width, blocks, heads, latents, timeChannel, timeEmbedDim, seed, output };
        command.SetAction(parse =>
        {
            var config = new EllaConnectorConfig
            {
                ConnectorType = parse.GetValue(type)!, InputDim = parse.GetValue(inputDim), Width = parse.GetValue(width),
                Layers = parse.GetValue(blocks), Heads = parse.GetValue(heads), NumLatents = parse.GetValue(latents),
                TimeChannel = parse.GetValue(timeChannel), TimeEmbedDim = parse.GetValue(timeEmbedDim) ?? parse.GetValue(width),
            };
            string path = parse.GetValue(output)!;
            long count = Write(config, path, parse.GetValue(seed));
            ctx.Out.WriteLine($"wrote {path}: {config.ConnectorType} connector, {count:N0} parameters");
            return EllaCli.ExitOk;
        });
        return command;
    }

    /// <summary>Builds, initialises (seeded) and saves a connector; returns its parameter count.</summary>
    public static long Write(EllaConnectorConfig config, string path, long seed)
    {
        TorchRuntime.Initialize();
        config.Validate("connector init");
        string? dir = Path.GetDirectoryName(Path.GetFullPath(path));
        if (dir != null && !Directory.Exists(dir)) throw new EllaException($"{path}: the folder {dir} does not exist");
        manual_seed(seed);
        using var model = Connectors.Create(config);
        model.Save(path);
        return model.parameters().Sum(p => p.NumberOfElements);
    }
}
