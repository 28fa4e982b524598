using Ella.Configs;

namespace Ella.Schedulers;

/// <summary>
/// Builds samplers by CLI name or diffusers class name from a base <c>scheduler_config.json</c>, like diffusers'
/// <c>Cls.from_config(pipe.scheduler.config, **overrides)</c>: keys the base file has carry over, the others take the new
/// class's defaults.
/// </summary>
public static class SchedulerFactory
{
    /// <summary>The CLI names, in the order the help lists them.</summary>
    public static readonly string[] Names = ["dpm++2m", "dpm++2m-karras", "ddim", "euler", "euler-a", "pndm", "lms"];

    static readonly string[] ClassNames =
        ["dpmsolvermultistepscheduler", "ddimscheduler", "eulerdiscretescheduler", "eulerancestraldiscretescheduler", "pndmscheduler", "lmsdiscretescheduler"];

    /// <summary>Whether <see cref="Create"/> knows the name (a CLI name or a diffusers class name).</summary>
    public static bool IsKnown(string name) => Names.Contains(name.ToLowerInvariant()) || ClassNames.Contains(name.ToLowerInvariant());

    public static IScheduler Create(string name, SchedulerConfig baseConfig)
    {
        var config = baseConfig.Clone();
        switch (name.ToLowerInvariant())
        {
            case "dpm++2m":
            case "dpmsolvermultistepscheduler":
                return new DpmSolverMultistepScheduler(config);
            case "dpm++2m-karras":
                config.UseKarrasSigmas = true;
                return new DpmSolverMultistepScheduler(config);
            case "ddim":
            case "ddimscheduler":
                return new DdimScheduler(config);
            case "euler":
            case "eulerdiscretescheduler":
                return new EulerDiscreteScheduler(config);
            case "euler-a":
            case "eulerancestraldiscretescheduler":
                return new EulerAncestralDiscreteScheduler(config);
            case "pndm":
            case "pndmscheduler":
                return new PndmScheduler(config);
            case "lms":
            case "lmsdiscretescheduler":
                return new LmsDiscreteScheduler(config);
            default:
                throw new EllaException($"unknown scheduler '{name}' (choose one of: {string.Join(", ", Names)})");
        }
    }

    /// <summary>The scheduler a config file names in its _class_name.</summary>
    public static IScheduler FromConfig(SchedulerConfig config) =>
        Create(config.ClassName ?? throw new EllaException("scheduler config has no _class_name"), config);
}
