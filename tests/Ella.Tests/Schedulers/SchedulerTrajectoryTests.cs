using System.Text.Json;
using System.Text.RegularExpressions;
using Ella.Configs;
using Ella.Schedulers;
using Ella.Tests.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Schedulers;

/// <summary>
/// Every variant folder under fixtures/diffusion/schedulers (a scheduler_config.json, a summary.json and
/// stepsN.safetensors files) is replayed: timesteps, sigmas, init_noise_sigma, scaled inputs and every sample.
/// </summary>
public class SchedulerTrajectoryTests
{
    static string Dir => Fixtures.PathOf("diffusion", "schedulers");

    public static IEnumerable<object[]> Runs()
    {
        foreach (var variant in Directory.GetDirectories(Dir).Order())
        {
            if (!File.Exists(Path.Combine(variant, "summary.json"))) continue;
            foreach (var file in Directory.GetFiles(variant, "steps*.safetensors").Order())
                yield return [Path.GetFileName(variant), Path.GetFileName(file)];
        }
    }

    [Theory]
    [MemberData(nameof(Runs))]
    public void Replays_the_reference_trajectory(string variant, string file)
    {
        string dir = Path.Combine(Dir, variant);
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "summary.json")));
        var root = summary.RootElement;
        int steps = int.Parse(Regex.Match(file, @"\d+").Value);
        var config = SchedulerConfig.Load(Path.Combine(dir, "scheduler_config.json"));
        var scheduler = SchedulerFactory.FromConfig(config);
        Assert.Equal(root.GetProperty("scheduler_class").GetString(), scheduler.ClassName);
        var data = Fixtures.Load(Path.Combine(dir, file));

        scheduler.SetTimesteps(steps);
        var expectedTimesteps = data["timesteps"].to_type(ScalarType.Float64).data<double>().ToArray();
        Assert.Equal(expectedTimesteps.Select(t => (float)t), scheduler.Timesteps.Select(t => (float)t));
        Assert.Equal(data["timesteps"].dtype == ScalarType.Int64, scheduler.IntegerTimesteps);
        if (data.TryGetValue("sigmas", out var sigmas))
            TensorAssert.Close(sigmas, tensor(scheduler.Sigmas.ToArray()), $"{variant}/{file} sigmas");
        Assert.Equal(data["init_noise_sigma"].item<float>(), (float)scheduler.InitNoiseSigma, 5);

        var fn = root.GetProperty("model_fn");
        double a = (float)fn.GetProperty("a").GetDouble();
        double b = fn.GetProperty("b").GetDouble();
        var pattern = data["pattern"];
        var generator = new Generator((ulong)root.GetProperty("generator_seed").GetInt64());
        var samples = data["samples"];
        using var _ = inference_mode();
        var sample = data["x"] * scheduler.InitNoiseSigma;
        TensorAssert.Close(samples[0], sample, $"{variant}/{file} initial sample");
        for (int i = 0; i < scheduler.Timesteps.Count; i++)
        {
            double t = scheduler.Timesteps[i];
            var scaled = scheduler.ScaleModelInput(sample, t);
            TensorAssert.Close(data["scaled_model_inputs"][i], scaled, $"{variant}/{file} scaled input {i}");
            double c = (float)(b * t / 1000);
            var output = scaled * a + pattern * c;
            sample = scheduler.Step(output, t, sample, generator);
            TensorAssert.Close(samples[i + 1], sample, $"{variant}/{file} sample after step {i} (t={t})");
        }
    }

    [Fact]
    public void Noise_schedule_tables_match()
    {
        var tables = Fixtures.Load(Path.Combine(Dir, "sd15_schedule_tables.safetensors"));
        var schedule = new NoiseSchedule(SchedulerConfig.Load(Path.Combine(Dir, "sd15_scheduler_config.json")));
        TensorAssert.Close(tables["betas"], tensor(schedule.Betas), "betas", 1e-6);
        TensorAssert.Close(tables["alphas_cumprod"], tensor(schedule.AlphasCumprod), "alphas_cumprod", 1e-6);
        TensorAssert.Close(tables["train_sigmas"], tensor(schedule.Sigmas), "train_sigmas", 1e-6);
    }

    /// <summary>The CLI names build, from SD1.5's own config, what the authors' from_config calls built.</summary>
    [Theory]
    [InlineData("dpm++2m", "dpmpp_2m")]
    [InlineData("dpm++2m-karras", "dpmpp_2m_karras")]
    [InlineData("ddim", "ddim")]
    [InlineData("euler", "euler")]
    [InlineData("euler-a", "euler_ancestral")]
    [InlineData("pndm", "pndm")]
    [InlineData("lms", "lms")]
    public void Cli_names_follow_from_config_semantics(string name, string variant)
    {
        var baseConfig = SchedulerConfig.Load(Path.Combine(Dir, "sd15_scheduler_config.json"));
        var ours = SchedulerFactory.Create(name, baseConfig);
        var reference = SchedulerFactory.FromConfig(SchedulerConfig.Load(Path.Combine(Dir, variant, "scheduler_config.json")));
        foreach (int n in new[] { 10, 25 })
        {
            ours.SetTimesteps(n);
            reference.SetTimesteps(n);
            Assert.Equal(reference.Timesteps, ours.Timesteps);
            Assert.Equal(reference.Sigmas, ours.Sigmas);
            Assert.Equal(reference.InitNoiseSigma, ours.InitNoiseSigma);
        }
    }

    [Fact]
    public void Unknown_names_and_bad_configs_get_clear_errors()
    {
        var cfg = SchedulerConfig.StableDiffusion15();
        Assert.Contains("dpm++2m", Assert.Throws<EllaException>(() => SchedulerFactory.Create("heun", cfg)).Message);
        var bad = cfg.Clone();
        bad.BetaSchedule = "quadratic";
        Assert.Contains("quadratic", Assert.Throws<EllaException>(() => SchedulerFactory.Create("ddim", bad)).Message);
        var parsed = SchedulerConfig.Parse("""{"_class_name":"DPMSolverMultistepScheduler","lambda_min_clipped": -Infinity}""", "inline");
        Assert.Equal(double.NegativeInfinity, parsed.LambdaMinClipped);
    }

    [Fact]
    public void Add_noise_follows_the_training_schedule()
    {
        var s = SchedulerFactory.Create("ddim", SchedulerConfig.StableDiffusion15());
        using var x = ones(2, 4, 2, 2);
        using var noise = zeros(2, 4, 2, 2);
        using var noisy = s.AddNoise(x, noise, tensor(new long[] { 0, 999 }));
        double a0 = Math.Sqrt(s.Schedule.AlphasCumprod[0]), a999 = Math.Sqrt(s.Schedule.AlphasCumprod[999]);
        Assert.Equal(a0, noisy[0].mean().item<float>(), 5);
        Assert.Equal(a999, noisy[1].mean().item<float>(), 5);
    }
}
