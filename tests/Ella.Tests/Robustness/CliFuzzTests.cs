using System.Collections.Concurrent;
using Ella.Tests.Infrastructure;
using FsCheck;
using FsCheck.Fluent;
using Xunit.Abstractions;

namespace Ella.Tests.Robustness;

/// <summary>
/// `ella` invocations generated from a grammar of commands, flags, values (negative, zero, huge, NaN, non-numeric,
/// empty, Unicode, control characters) and paths (missing, a folder, a file of the wrong kind, unreadable, empty): each
/// must end with exit code 0 or 2 and no stack trace. Most start from a valid invocation on the tiny models and change
/// one to three things, so they get past the parser into loading and generation. Steps and sizes in the grammar stay
/// small, so a valid invocation takes a fraction of a second. ELLA_FUZZ_RUNS raises the count (default 300).
/// </summary>
public sealed class CliFuzzTests : IDisposable
{
    readonly TinyModels _m = new();
    readonly ITestOutputHelper _log;
    readonly string _work;
    public CliFuzzTests(ITestOutputHelper log)
    {
        _log = log;
        _work = Path.Combine(_m.Root, "work");
        Directory.CreateDirectory(_work);
    }
    public void Dispose() => _m.Dispose();

    /// <summary>One value of a flag, with the kind it was drawn from (for the counts in the report).</summary>
    public sealed record Value(string Kind, string Text);

    public sealed record Flag(string Name, Gen<Value> Values, bool IsSwitch = false);

    public sealed record Invocation(string Command, string[] Args)
    {
        public override string ToString() => string.Join(" ", Args.Select(a => a.Length == 0 || a.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)) ? $"'{Escape(a)}'" : Escape(a)));
        static string Escape(string s) => string.Concat(s.Select(c => char.IsControl(c) || char.IsSurrogate(c) ? $"\\u{(int)c:x4}" : c.ToString()));
    }

    static Gen<Value> Of(string kind, params string[] values) => Gen.Elements(values).Select(v => new Value(kind, v));
    static Gen<Value> OneOf(params Gen<Value>[] gens) => Gen.OneOf(gens);

    static readonly Gen<Value> Numbers = OneOf(
        Of("number:negative", "-1", "-8", "-2147483648", "-99999999999999999999"),
        Of("number:zero", "0", "-0", "0.0"),
        Of("number:small", "1", "2", "3"),
        Of("number:huge", "2147483647", "2147483648", "9223372036854775807", "18446744073709551616", "1e309"),
        Of("number:nan", "NaN", "Infinity", "-Infinity", "nan"),
        Of("number:non-numeric", "abc", "1.5", "0x10", "1e3", "٣", "１", "--"),
        Of("empty", "", " "));

    static readonly string LongPrompt = string.Join(" ", Enumerable.Range(0, 3000).Select(i => $"word{i % 97}"));

    static readonly Gen<Value> Texts = OneOf(
        Of("text:plain", "a red cube", "A vintage red pickup truck parked on a sandy beach at dusk"),
        Of("empty", "", " ", "\n"),
        Of("text:control", "nul\0inside", "esc\u001b[31mred\u0007", "\u0001\u0002\u0003", "tab\tnew\nline\r"),
        Of("text:surrogate", "lone \uD800 high", "lone \uDC00 low", "\uDFFF\uD800"),
        Of("text:rtl", "\u05E9\u05DC\u05D5\u05DD \u0645\u0631\u062D\u0628\u0627", "\u202Eevil override\u202C"),
        Of("text:emoji", "🙂🐱‍👤 a cat 🏳️‍🌈", "👩‍👩‍👧‍👦"),
        Of("text:special", "<extra_id_0> </s> <pad> <unk>", "<|startoftext|><|endoftext|>", "%s %n {0} \\"),
        Of("text:long", LongPrompt));

    Gen<Value> Paths(params (string Kind, string Path)[] valid)
    {
        string text = Path.Combine(_m.Root, "note.txt");
        if (!File.Exists(text)) File.WriteAllText(text, "just some text\n");
        string empty = Path.Combine(_m.Root, "empty.bin");
        if (!File.Exists(empty)) File.WriteAllBytes(empty, []);
        string locked = Path.Combine(_m.Root, "locked.safetensors");
        if (!File.Exists(locked)) { File.WriteAllBytes(locked, [1, 2, 3]); if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(locked, UnixFileMode.None); }
        var png = Fixtures.PathOf("dpg", "four-images", "images", "0.png");
        return OneOf(
            valid.Length > 0 ? Gen.Elements(valid).Select(v => new Value(v.Kind, v.Path)) : Of("path:missing", Path.Combine(_m.Root, "missing")),
            Of("path:missing", Path.Combine(_m.Root, "missing", "x"), "no-such-file.safetensors", "org/not-cached-model"),
            Of("path:folder", _m.Root, "/"),
            Of("path:wrong-kind", text, png, _m.Embeds, Fixtures.PathOf("diffusion", "pipeline", "model", "model_index.json")),
            Of("path:unreadable", "/proc/self/mem", locked, "/dev/null"),
            Of("path:empty-file", empty),
            Of("path:unicode", Path.Combine(_m.Root, "ünï 🙂", "x")),
            Of("empty", ""));
    }

    List<Flag> PipelineFlags()
    {
        var fixtureElla = Fixtures.PathOf("diffusion", "pipeline", "model", "ella.safetensors");
        return
        [
            new("--sd", Paths(("path:valid", _m.Sd), ("path:valid-no-clip", Fixtures.PathOf("diffusion", "pipeline", "model")))),
            new("--t5", Paths(("path:valid", _m.T5))),
            new("--ella", Paths(("path:valid", _m.Ella64), ("path:mismatched-model", fixtureElla))),
            new("--clip-tokenizer", Paths(("path:valid", Path.Combine(Fixtures.SharedData, "clip")))),
            new("--mode", OneOf(Of("choice", "ella", "clip", "ella+clip"), Of("choice:invalid", "ELLA", "t5", ""))),
            new("--token-length", OneOf(Of("choice", "flexible", "fixed"), Of("choice:invalid", "both", ""))),
            new("--max-length", Numbers),
            new("--scheduler", OneOf(Of("choice", "dpm++2m", "dpm++2m-karras", "ddim", "euler", "euler-a", "pndm", "lms"), Of("choice:invalid", "heun", ""))),
            new("--steps", OneOf(Of("number:small", "1", "2", "3"), Of("number:negative", "-1"), Of("number:zero", "0"), Of("number:huge", "1001", "2147483648"), Of("number:non-numeric", "two", "2.5", ""))),
            new("--guidance", OneOf(Numbers, Of("number:small", "7.5", "1", "0"))),
            new("--seed", OneOf(Numbers, Of("number:seed", "-1", "18446744073709551615", "9223372036854775808"))),
            new("--width", Sizes), new("--height", Sizes),
            new("--dtype", OneOf(Of("choice", "fp32", "bf16", "fp16"), Of("choice:invalid", "int8", ""))),
            new("--device", Of("choice", "cpu", "cuda", "cuda:0", "tpu", "", "CPU")),
            new("--threads", OneOf(Of("number:small", "1", "2"), Of("number:negative", "-1"), Of("number:zero", "0"), Of("number:huge", "100000"), Of("number:non-numeric", "all"))),
            new("--low-memory", Switch, true), new("--vae-tiling", Switch, true), new("--no-overwrite", Switch, true),
            new("--max-prompt-tokens", Numbers),
        ];
    }

    static readonly Gen<Value> Sizes = OneOf(Of("number:small", "8", "16", "24", "64"), Of("number:negative", "-8"), Of("number:zero", "0"),
        Of("number:odd", "7", "60"), Of("number:huge", "2147483640", "999999992", "16384"), Of("number:non-numeric", "64px", ""));

    static readonly Gen<Value> Switch = Of("switch", "", "true", "false", "maybe");

    Gen<Value> Outputs(string name) => OneOf(
        Gen.Constant(0).Select(_ => new Value("path:new", Path.Combine(_work, $"{name}-{Guid.NewGuid():N}.png"))),
        Gen.Constant(0).Select(_ => new Value("path:new-folder", Path.Combine(_work, Guid.NewGuid().ToString("N"), "deep", "x.png"))),
        Of("path:existing", Path.Combine(_work, "existing.png")),
        Of("path:folder", _work),
        Of("path:under-a-file", Path.Combine(_m.Root, "note.txt", "x.png")),
        Of("path:unicode", Path.Combine(_work, "ünï 🙂.png")),
        Of("empty", ""));

    (string[] Command, List<Flag> Flags, Dictionary<string, string> Base, string[] Positional)[] Grammar()
    {
        string prompts = Path.Combine(_m.Root, "prompts");
        Directory.CreateDirectory(prompts);
        File.WriteAllText(Path.Combine(prompts, "p0.txt"), "a red cube on a blue table");
        string emptyPrompts = Path.Combine(_m.Root, "no-prompts");
        Directory.CreateDirectory(emptyPrompts);
        string promptFile = Path.Combine(_m.Root, "prompt.txt");
        File.WriteAllText(promptFile, "a green sphere");
        string images = Path.Combine(_m.Root, "dpg-images");
        if (!Directory.Exists(images))
        {
            Directory.CreateDirectory(images);
            foreach (var f in Directory.GetFiles(Fixtures.PathOf("dpg", "four-images", "images"))) File.Copy(f, Path.Combine(images, Path.GetFileName(f)));
        }
        string existing = Path.Combine(_work, "existing.png");
        if (!File.Exists(existing)) File.Copy(Fixtures.PathOf("dpg", "four-images", "images", "0.png"), existing);
        var dpg = Fixtures.PathOf("dpg", "four-images");
        var tagger = Path.Combine(Fixtures.SharedData, "nltk", "averaged_perceptron_tagger_eng");

        var generate = PipelineFlags().Concat(new Flag[]
        {
            new("--prompt", Texts), new("--negative-prompt", Texts),
            new("--prompt-file", Paths(("path:valid", promptFile))),
            new("--batch", OneOf(Of("number:small", "1", "2"), Of("number:negative", "-1"), Of("number:zero", "0"), Of("number:huge", "5000", "2147483647"), Of("number:non-numeric", "x"))),
            new("--output", Outputs("gen")),
            new("--prompt-embeds", Paths(("path:valid", _m.Embeds), ("path:mismatched-model", Fixtures.PathOf("diffusion", "pipeline", "run_flex_g7.5.safetensors")))),
        }).ToList();
        var fast = new Dictionary<string, string>
        {
            ["--sd"] = _m.Sd, ["--t5"] = _m.T5, ["--ella"] = _m.Ella64, ["--steps"] = "2", ["--width"] = "16", ["--height"] = "16", ["--seed"] = "1",
        };
        var compare = PipelineFlags().Concat(new Flag[] { new("--prompt", Texts), new("--prompt-file", Paths(("path:valid", promptFile))), new("--output", Outputs("cmp")) }).ToList();
        var dpgGenerate = PipelineFlags().Concat(new Flag[]
        {
            new("--prompts", Paths(("path:valid", prompts), ("path:empty-folder", emptyPrompts))),
            new("--out", OneOf(Gen.Constant(0).Select(_ => new Value("path:new", Path.Combine(_work, Guid.NewGuid().ToString("N")))), Paths())),
            new("--images-per-prompt", OneOf(Of("number:small", "1", "2"), Of("number:negative", "-4"), Of("number:zero", "0"), Of("number:huge", "100000"), Of("number:non-numeric", "four"))),
            new("--shard", Of("choice", "0/1", "1/2", "0/0", "a/b", "-1/2", "", "3/2", "1/1", "0/2147483647")),
            new("--negative-prompt", Texts),
        }).ToList();
        var score = new List<Flag>
        {
            new("--images", Paths(("path:valid", images))), new("--csv", Paths(("path:valid", Path.Combine(dpg, "dpg_bench.csv")))),
            new("--resolution", OneOf(Of("number:small", "64"), Numbers)), new("--pic-num", OneOf(Of("number:small", "1", "4"), Numbers)),
            new("--scoring", Of("choice", "official", "corrected", "best", "")), new("--judge", Of("choice", "replay", "openai", "oracle", "")),
            new("--answers", Paths(("path:valid", Path.Combine(dpg, "answers.jsonl")))),
            new("--endpoint", Of("url:invalid", "", "not a url", "http://", "://x")), new("--model", Texts),
            new("--parallel", Numbers), new("--retries", Numbers),
            new("--out", OneOf(Gen.Constant(0).Select(_ => new Value("path:new", Path.Combine(_work, Guid.NewGuid().ToString("N")))), Paths())),
            new("--json", Switch, true), new("--max-pixels", OneOf(Of("number:small", "100", "1"), Numbers)),
        };
        var stats = new List<Flag>
        {
            new("--prompts", Paths(("path:valid", prompts), ("path:empty-folder", emptyPrompts))),
            new("--clip-vocab", Paths(("path:valid", Path.Combine(Fixtures.SharedData, "clip")))),
            new("--tagger", Paths(("path:valid", tagger))), new("--json", Switch, true), new("--plot", Outputs("plot")),
        };
        var tokenize = new List<Flag>
        {
            new("--t5", Paths(("path:valid", _m.T5))), new("--clip", Paths(("path:valid", Path.Combine(Fixtures.SharedData, "clip")))),
            new("--token-length", Of("choice", "flexible", "fixed", "none")), new("--max-length", Numbers), new("--json", Switch, true),
        };
        var inspect = new List<Flag> { new("--json", Switch, true), new("--tensors", Switch, true) };
        return
        [
            (["generate"], generate, new(fast) { ["--prompt"] = "a red cube", ["--output"] = Path.Combine(_work, "g.png") }, []),
            (["compare"], compare, new(fast) { ["--prompt"] = "a red cube", ["--steps"] = "1", ["--output"] = Path.Combine(_work, "c.png") }, []),
            (["dpg", "generate"], dpgGenerate, new(fast) { ["--prompts"] = prompts, ["--out"] = Path.Combine(_work, "dpg-out"), ["--images-per-prompt"] = "1", ["--steps"] = "1" }, []),
            (["dpg", "score"], score, new() { ["--images"] = images, ["--csv"] = Path.Combine(dpg, "dpg_bench.csv"), ["--resolution"] = "64", ["--judge"] = "replay", ["--answers"] = Path.Combine(dpg, "answers.jsonl"), ["--out"] = Path.Combine(_work, "score") }, []),
            (["dpg", "stats"], stats, new() { ["--prompts"] = prompts, ["--clip-vocab"] = Path.Combine(Fixtures.SharedData, "clip"), ["--tagger"] = tagger }, []),
            (["tokenize"], tokenize, new() { ["--t5"] = _m.T5 }, ["a red cube"]),
            (["inspect"], inspect, new(), [_m.Ella64]),
        ];
    }

    Gen<Invocation> Invocations()
    {
        var grammar = Grammar();
        var positionals = OneOf(Texts, Paths(("path:valid", _m.Ella64), ("path:valid", _m.Sd)));
        return from g in Gen.Elements(grammar)
               from keepBase in Gen.Choose(0, 4).Select(i => i > 0)
               from changes in Gen.Choose(1, 3).SelectMany(n => Gen.ArrayOf(Gen.Elements(g.Flags.ToArray()).SelectMany(f => f.Values.Select(v => (Flag: f, Value: v))), n))
               from dropAt in Gen.Choose(0, 6 * Math.Max(1, g.Base.Count))
               from extraAt in Gen.Choose(0, 12 * 3)
               from positional in Gen.Choose(0, 3).SelectMany(i => i == 0 ? positionals.Select(v => (Value?)v) : Gen.Constant<Value?>(null))
               let drop = dropAt < g.Base.Count ? g.Base.Keys.ElementAt(dropAt) : null
               let extra = extraAt < 3 ? new[] { new[] { "--bogus", "-x", "--" }[extraAt] } : Array.Empty<string>()
               select Build(g.Command, g.Base, g.Positional, keepBase, changes, drop, extra, positional);
    }

    static readonly ConcurrentDictionary<string, int> Counts = new();
    static readonly ConcurrentDictionary<string, double> Seconds = new();

    static Invocation Build(string[] command, Dictionary<string, string> baseArgs, string[] basePositional, bool keepBase,
        (Flag Flag, Value Value)[] changes, string? drop, string[] extra, Value? positional)
    {
        var values = keepBase ? new Dictionary<string, string?>(baseArgs.Select(kv => KeyValuePair.Create(kv.Key, (string?)kv.Value))) : new();
        var switches = new Dictionary<string, string>();
        foreach (var (flag, value) in changes)
        {
            Counts.AddOrUpdate(value.Kind.Split(':')[0] + ":" + (value.Kind.Contains(':') ? value.Kind.Split(':')[1] : "-"), 1, (_, c) => c + 1);
            if (flag.IsSwitch) switches[flag.Name] = value.Text;
            else values[flag.Name] = value.Text;
        }
        if (drop != null) values.Remove(drop);
        var args = new List<string>(command);
        foreach (var (k, v) in values) { args.Add(k); args.Add(v!); }
        foreach (var (k, v) in switches) { args.Add(k); if (v.Length > 0) args.Add(v); }
        args.AddRange(extra);
        if (positional != null) { args.Add(positional.Text); Counts.AddOrUpdate("positional", 1, (_, c) => c + 1); }
        else if (keepBase) args.AddRange(basePositional);
        Counts.AddOrUpdate("command:" + string.Join(" ", command), 1, (_, c) => c + 1);
        return new Invocation(string.Join(" ", command), args.ToArray());
    }

    [Fact]
    public void Generated_invocations_end_with_exit_0_or_2_and_no_stack_trace()
    {
        int runs = int.TryParse(Environment.GetEnvironmentVariable("ELLA_FUZZ_RUNS"), out int n) ? n : 300;
        Counts.Clear();
        Seconds.Clear();
        var exits = new ConcurrentDictionary<int, int>();
        var failures = new List<string>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var slowest = (Seconds: 0.0, What: "");
        var property = Prop.ForAll(Invocations().ToArbitrary(), inv =>
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var r = CliRunner.Run(inv.Args);
            TinyModels.OneThread();
            if (sw.Elapsed.TotalSeconds > slowest.Seconds) slowest = (sw.Elapsed.TotalSeconds, inv.ToString());
            Seconds.AddOrUpdate(inv.Command, sw.Elapsed.TotalSeconds, (_, t) => t + sw.Elapsed.TotalSeconds);
            exits.AddOrUpdate(r.ExitCode, 1, (_, c) => c + 1);
            string all = r.Out + r.Error;
            bool ok = (r.ExitCode == 0 || (r.ExitCode == 2 && r.Error.Contains("error:"))) && !all.Contains("   at ") && !all.Contains("internal error");
            if (!ok) failures.Add($"exit {r.ExitCode}: ella {inv}\n{r.Error.Trim()}");
            return true; // every run is reported below, not only the first one FsCheck would shrink
        });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(runs).WithQuietOnSuccess(true), property);
        _log.WriteLine($"{runs} invocations in {clock.Elapsed.TotalSeconds:F1} s; exits {string.Join(", ", exits.OrderBy(e => e.Key).Select(e => $"{e.Key}: {e.Value}"))}; slowest {slowest.Seconds:F2} s: {slowest.What}");
        foreach (var (k, v) in Counts.OrderBy(kv => kv.Key)) _log.WriteLine($"  {k}: {v}");
        foreach (var (k, v) in Seconds.OrderBy(kv => kv.Key)) _log.WriteLine($"  seconds in {k}: {v:F1}");
        Assert.True(failures.Count == 0, $"{failures.Count} of {runs} invocations failed:\n\n{string.Join("\n\n", failures.Take(30))}");
    }
}
