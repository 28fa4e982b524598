using Ella.Imaging;
using Ella.Modules.Ella;
using Ella.Pipelines;
using Ella.Tests.Infrastructure;
using Ella.TextEncoders;

namespace Ella.Tests.Cli;

/// <summary>
/// The default model: with no model flag and no model variable, `ella generate` uses the shapes world (a tiny random
/// stand-in here, found through ELLA_WORLD_MODEL): ELLA with the connector's text encoder (metadata), `--mode clip` its
/// base model, 64×64 by default; `--upscale N` saves N× larger, nearest neighbour.
/// </summary>
public sealed class WorldDefaultModelTests : IDisposable
{
    readonly TinyWorldFolder _world = new();
    readonly string _out = Directory.CreateTempSubdirectory("ella-world-out-").FullName;

    public void Dispose()
    {
        _world.Dispose();
        Directory.Delete(_out, true);
    }

    string Png(string name) => Path.Combine(_out, name);

    static string Parameters(string png) => PngText.Read(File.ReadAllBytes(png))["parameters"];

    [Fact]
    public void Generate_without_model_flags_uses_the_world_at_its_own_size_and_upscales_nearest_neighbour()
    {
        using var env = _world.AsDefault();
        string big = Png("big.png");
        var r = CliRunner.Run("generate", "--prompt", "a red circle left of a blue square", "-o", big, "--upscale", "4", "--steps", "2", "--seed", "7", "--dtype", "fp32");
        Assert.True(r.ExitCode == 0, r.Error);
        var image = RgbImage.Load(big);
        Assert.Equal((256, 256), (image.Width, image.Height));
        string parameters = Parameters(big);
        Assert.Contains("Text encoder: minilm", parameters); // from the connector's metadata
        Assert.Contains("Size: 64x64", parameters);
        Assert.Contains("Upscale: 4x", parameters);
        Assert.Contains("Mode: ella", parameters);

        // Nearest neighbour: every 4×4 block is one colour (the block's own pixel), and the blocks are not all alike.
        var blockColours = new HashSet<(byte, byte, byte)>();
        for (int y = 0; y < 256; y++)
            for (int x = 0; x < 256; x++)
            {
                int corner = ((y / 4 * 4) * 256 + x / 4 * 4) * 3, at = (y * 256 + x) * 3;
                for (int c = 0; c < 3; c++) Assert.Equal(image.Pixels[corner + c], image.Pixels[at + c]);
                if (x % 4 == 0 && y % 4 == 0) blockColours.Add((image.Pixels[at], image.Pixels[at + 1], image.Pixels[at + 2]));
            }
        Assert.True(blockColours.Count > 1, "the image is one flat colour: the block check would prove nothing");
    }

    [Fact]
    public void UpscaleNearest_repeats_each_pixel_in_an_n_by_n_block()
    {
        var small = new RgbImage(3, 2, Enumerable.Range(0, 18).Select(i => (byte)(i * 13 + 1)).ToArray());
        var big = small.UpscaleNearest(3);
        Assert.Equal((9, 6), (big.Width, big.Height));
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 9; x++)
                for (int c = 0; c < 3; c++)
                    Assert.Equal((byte)(((y / 3) * 3 + x / 3) * 3 * 13 + c * 13 + 1), big.Pixels[(y * 9 + x) * 3 + c]);
        Assert.Same(small, small.UpscaleNearest(1));
        Assert.Throws<ArgumentOutOfRangeException>(() => small.UpscaleNearest(0));
    }

    [Fact]
    public void Compare_without_model_flags_shows_the_worlds_clip_and_ella_upscaled()
    {
        using var env = _world.AsDefault();
        string grid = Png("compare.png");
        var r = CliRunner.Run("compare", "--prompt", "a small yellow star", "-o", grid, "--steps", "1", "--seed", "4", "--upscale", "2", "--dtype", "fp32");
        Assert.True(r.ExitCode == 0, r.Error);
        var image = RgbImage.Load(grid);
        Assert.True(image.Width >= 3 * 128 && image.Height >= 128, $"grid {image.Width}×{image.Height}: three 128-px cells expected");
        Assert.Contains("Upscale: 2x", Parameters(grid));
    }

    [Fact]
    public void Clip_mode_runs_the_worlds_base_model_without_its_connector()
    {
        File.Delete(_world.Connector);
        using var env = _world.AsDefault();
        string clip = Png("clip.png");
        var r = CliRunner.Run("generate", "--mode", "clip", "--prompt", "a green triangle", "-o", clip, "--steps", "2", "--seed", "1", "--width", "32", "--dtype", "fp32");
        Assert.True(r.ExitCode == 0, r.Error);
        var image = RgbImage.Load(clip);
        Assert.Equal((32, 64), (image.Width, image.Height)); // --width given, height the world's
        Assert.Contains("Mode: clip", Parameters(clip));

        var ella = CliRunner.Run("generate", "--prompt", "a green triangle", "-o", Png("ella.png"), "--steps", "2");
        Assert.Equal(2, ella.ExitCode);
        Assert.Contains("connector.safetensors", ella.Error);
        Assert.Contains("--mode clip", ella.Error);
    }

    [Fact]
    public void A_missing_world_folder_is_an_exit_2_error_that_names_the_flags()
    {
        using var env = _world.AsDefault().Set(WorldDefaultModel.EnvVar, Path.Combine(_out, "no-such-world"));
        var r = CliRunner.Run("generate", "--prompt", "a red circle", "-o", Png("x.png"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(WorldDefaultModel.EnvVar, r.Error);
        Assert.DoesNotContain("   at ", r.Error);
        Assert.False(File.Exists(Png("x.png")));

        // Without the variable: looked for beside the program and above the current folder, and the message names the flags.
        string empty = Directory.CreateTempSubdirectory("ella-noworld-").FullName;
        try
        {
            var e = Assert.Throws<EllaException>(() => WorldDefaultModel.Locate(empty, empty, _ => null));
            Assert.Contains("--sd", e.Message);
            Assert.Contains("--ella", e.Message);
            Assert.Contains(WorldDefaultModel.EnvVar, e.Message);
        }
        finally { Directory.Delete(empty, true); }
    }

    [Fact]
    public void The_world_is_found_beside_the_program_or_above_the_current_folder_and_the_variable_wins()
    {
        string programDir = Path.Combine(_out, "bin"), deep = Path.Combine(_world.Root, "a", "b");
        Directory.CreateDirectory(programDir);
        Directory.CreateDirectory(deep);
        Assert.Equal(Path.GetFullPath(_world.Folder), Path.GetFullPath(WorldDefaultModel.Find(programDir, deep, _ => null)!));
        Assert.Null(WorldDefaultModel.Find(programDir, programDir, _ => null));
        Assert.Equal(Path.Combine(_world.Root, WorldDefaultModel.RelativeFolder), WorldDefaultModel.Find(_world.Root, programDir, _ => null));
        string other = Path.Combine(_out, "elsewhere");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, WorldDefaultModel.MarkerFile), "{}");
        Assert.Equal(other, WorldDefaultModel.Find(_world.Root, deep, v => v == WorldDefaultModel.EnvVar ? other : null));
    }

    [Fact]
    public void A_model_flag_or_variable_turns_the_world_default_off()
    {
        using var env = _world.AsDefault().Set("ELLA_SD", Path.Combine(_out, "missing-sd"));
        var r = CliRunner.Run("generate", "--prompt", "a red circle", "-o", Png("x.png"), "--steps", "1");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("missing-sd", r.Error);
    }

    [Fact]
    public void A_world_folder_named_by_sd_gets_its_own_size_and_other_folders_keep_512()
    {
        using var env = new EnvironmentOverride();
        foreach (var v in WorldDefaultModel.ModelEnvVars) env.Set(v, null);
        string png = Png("sd-world.png");
        var r = CliRunner.Run("generate", "--sd", _world.Folder, "--mode", "clip", "--prompt", "a red circle", "-o", png, "--steps", "1", "--seed", "1", "--dtype", "fp32");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("Size: 64x64", Parameters(png));
        // A folder whose index does not say "world": "shapes" is not the world (SD's 512×512 default stays).
        Assert.NotNull(WorldDefaultModel.Of(_world.Folder));
        string plain = Path.Combine(_out, "plain");
        Directory.CreateDirectory(plain);
        File.WriteAllText(Path.Combine(plain, WorldDefaultModel.MarkerFile), """{"_class_name": "StableDiffusionPipeline"}""");
        Assert.Null(WorldDefaultModel.Of(plain));
        File.WriteAllText(Path.Combine(plain, WorldDefaultModel.MarkerFile), "{ not json");
        Assert.Null(WorldDefaultModel.Of(plain));
        Assert.Null(WorldDefaultModel.Of(Path.Combine(_out, "missing")));
    }

    [Fact]
    public void Ella_file_without_text_encoder_flag_uses_the_files_metadata_else_t5()
    {
        using var env = new EnvironmentOverride();
        foreach (var v in WorldDefaultModel.ModelEnvVars) env.Set(v, null);
        // The world's folder given explicitly as --sd, its connector as --ella: no --text-encoder, no --t5 needed.
        string png = Png("meta.png");
        var r = CliRunner.Run("generate", "--sd", _world.Folder, "--ella", _world.Connector, "--prompt", "two squares", "-o", png,
            "--steps", "1", "--seed", "2", "--width", "64", "--height", "64", "--dtype", "fp32");
        Assert.True(r.ExitCode == 0, r.Error);
        Assert.Contains("Text encoder: minilm", Parameters(png));

        string bare = Path.Combine(_out, "bare.safetensors");
        TinyWorldFolder.WriteConnector(bare, null);
        var t5 = CliRunner.Run("generate", "--sd", _world.Folder, "--ella", bare, "--prompt", "two squares", "-o", Png("bare.png"), "--steps", "1", "--width", "64", "--height", "64");
        Assert.Equal(2, t5.ExitCode);
        Assert.Contains("--t5", t5.Error);
    }

    [Fact]
    public void Upscale_must_be_an_integer_of_at_least_one()
    {
        using var env = _world.AsDefault();
        foreach (var bad in new[] { "0", "-2", "abc", "1.5" })
        {
            var r = CliRunner.Run("generate", "--prompt", "a red circle", "-o", Png("u.png"), "--upscale", bad);
            Assert.True(r.ExitCode == 2, $"--upscale {bad}: {r.ExitCode} {r.Error}");
            Assert.Contains("upscale", r.Error);
            Assert.False(File.Exists(Png("u.png")));
        }
    }

    [Fact]
    public void Connector_metadata_reader_returns_the_text_encoder_or_null()
    {
        Assert.Equal("minilm", ConnectorMetadata.TextEncoder(_world.Connector));
        Assert.Equal(TextEncoderKind.MiniLM, ConnectorMetadata.TextEncoderKindOf(_world.Connector));
        string bare = Path.Combine(_out, "bare.safetensors");
        TinyWorldFolder.WriteConnector(bare, null);
        Assert.Null(ConnectorMetadata.TextEncoder(bare));
        Assert.Null(ConnectorMetadata.TextEncoderKindOf(bare));
        string odd = Path.Combine(_out, "odd.safetensors");
        TinyWorldFolder.WriteConnector(odd, "bert-large");
        Assert.Contains("bert-large", Assert.Throws<EllaException>(() => ConnectorMetadata.TextEncoderKindOf(odd)).Message);
    }
}
