namespace Ella.Hardware;

/// <summary>
/// What the CPU offers for this project's kernels, read from <c>/proc/cpuinfo</c> (vendor, model name, flags) and the
/// sysfs topology (physical cores). <see cref="Parse"/> takes the text, so recorded cpuinfo files of other machines
/// are testable; <see cref="Current"/> reads this machine once.
/// </summary>
public sealed record CpuInfo(string Vendor, string ModelName, IReadOnlySet<string> Flags, int LogicalCpus, int PhysicalCores)
{
    /// <summary>The flags that decide which kernels libtorch and oneDNN can use, in the order they are shown.</summary>
    public static readonly string[] KeyFlags = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni"];

    public bool Has(string flag) => Flags.Contains(flag);

    /// <summary>The instruction-set cap these flags were cut to (<see cref="CpuIsaCap"/>), or null.</summary>
    public string? IsaCap { get; init; }

    /// <summary>This CPU as <see cref="CpuIsaCap"/>'s <paramref name="cap"/> makes it look (null: unchanged).</summary>
    public CpuInfo CappedAt(string? cap) => cap == null ? this : this with { Flags = CpuIsaCap.Mask(Flags, cap), IsaCap = cap };

    /// <summary>Native bf16 arithmetic (AVX-512 BF16 dot products or AMX tiles): bf16 matmul and convolution run fast.</summary>
    public bool HasNativeBf16 => Has("avx512_bf16") || Has("amx_bf16");

    /// <summary>The key flags this CPU has, in <see cref="KeyFlags"/> order.</summary>
    public IReadOnlyList<string> PresentKeyFlags => KeyFlags.Where(Has).ToList();

    /// <summary>
    /// Default intra-op threads: one per physical core (hyper-threads share a core's vector units, so a second thread
    /// per core only adds contention), never more than the CPUs this process may run on.
    /// </summary>
    public int DefaultThreads => Math.Max(1, Math.Min(PhysicalCores, Environment.ProcessorCount));

    /// <summary>One line: model name, vendor, cores and the key flags.</summary>
    public string Describe() =>
        $"{ModelName} ({Vendor}), {PhysicalCores} physical core{(PhysicalCores == 1 ? "" : "s")}, {LogicalCpus} logical; " +
        $"flags: {(PresentKeyFlags.Count == 0 ? "none of " + string.Join(", ", KeyFlags) : string.Join(" ", PresentKeyFlags))}" +
        (IsaCap is { } cap ? $" (capped at {cap} by {CpuIsaCap.Variable})" : "");

    static readonly Lazy<CpuInfo> CurrentLazy = new(ReadCurrent);

    /// <summary>This machine (read once).</summary>
    public static CpuInfo Current => CurrentLazy.Value;

    static CpuInfo ReadCurrent()
    {
        string text = "";
        try { if (File.Exists("/proc/cpuinfo")) text = File.ReadAllText("/proc/cpuinfo"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return Parse(text, "/sys/devices/system/cpu").CappedAt(CpuIsaCap.Current);
    }

    /// <summary>
    /// Parses <c>/proc/cpuinfo</c> text (x86 layout: one block per logical CPU). Physical cores: distinct
    /// (package, core) pairs from <paramref name="sysfsCpuRoot"/> (<c>cpuN/topology/{physical_package_id,core_id}</c>)
    /// when it is given and readable, else distinct (<c>physical id</c>, <c>core id</c>) pairs of the text, else
    /// <c>cpu cores</c> × packages, else the logical count.
    /// </summary>
    public static CpuInfo Parse(string cpuinfo, string? sysfsCpuRoot = null)
    {
        string vendor = "", model = "";
        var flags = new HashSet<string>(StringComparer.Ordinal);
        int logical = 0;
        var pairs = new HashSet<(string, string)>();
        var packages = new HashSet<string>();
        int coresPerPackage = 0;
        string package = "0", core = "";
        void EndBlock()
        {
            if (core != "") pairs.Add((package, core));
            package = "0";
            core = "";
        }
        foreach (var raw in cpuinfo.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Trim().Length == 0) { EndBlock(); continue; }
            int colon = line.IndexOf(':');
            if (colon < 0) continue;
            string key = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
            switch (key)
            {
                case "processor": logical++; break;
                case "vendor_id": if (vendor == "") vendor = value; break;
                case "model name": if (model == "") model = value; break;
                case "flags":
                    if (flags.Count == 0) foreach (var f in value.Split(' ', StringSplitOptions.RemoveEmptyEntries)) flags.Add(f);
                    break;
                case "physical id": package = value; packages.Add(value); break;
                case "core id": core = value; break;
                case "cpu cores": if (int.TryParse(value, out int c)) coresPerPackage = c; break;
            }
        }
        EndBlock();
        logical = Math.Max(logical, 1);
        int physical = SysfsPhysicalCores(sysfsCpuRoot)
            ?? (pairs.Count > 0 ? pairs.Count
            : coresPerPackage > 0 ? coresPerPackage * Math.Max(1, packages.Count)
            : logical);
        return new CpuInfo(vendor == "" ? "unknown" : vendor, model == "" ? "unknown CPU" : model, flags, logical, Math.Min(physical, logical));
    }

    static int? SysfsPhysicalCores(string? root)
    {
        if (root == null || !Directory.Exists(root)) return null;
        try
        {
            var pairs = new HashSet<(string, string)>();
            foreach (var dir in Directory.EnumerateDirectories(root, "cpu*"))
            {
                string name = Path.GetFileName(dir);
                if (name.Length <= 3 || !name[3..].All(char.IsAsciiDigit)) continue;
                string topo = Path.Combine(dir, "topology");
                string corePath = Path.Combine(topo, "core_id"), pkgPath = Path.Combine(topo, "physical_package_id");
                if (!File.Exists(corePath)) continue;
                string online = Path.Combine(dir, "online");
                if (File.Exists(online) && File.ReadAllText(online).Trim() == "0") continue;
                pairs.Add((File.Exists(pkgPath) ? File.ReadAllText(pkgPath).Trim() : "0", File.ReadAllText(corePath).Trim()));
            }
            return pairs.Count > 0 ? pairs.Count : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
