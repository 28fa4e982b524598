using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Text;
using Ella.Hardware;

namespace Ella.Native;

/// <summary>
/// Lets MKL (linked into libtorch_cpu.so; libtorch's float32 matmuls, linears and the matmuls inside its fused
/// attention) run its Intel code paths on AMD CPUs. MKL picks its code path by asking <c>mkl_serv_intel_cpu_true()</c>
/// whether the CPU is an Intel one, and on any other vendor it takes a generic path:
/// <list type="bullet">
/// <item>on AMD CPUs with AVX-512 (Zen 4 and later) it stays on AVX2, half the rate of the same cores (measured on a
/// 2-core Zen 4: [4096, 320] · [320, 320] 175 GFLOP/s, 410 with the answer forced);</item>
/// <item>on AVX2-only AMD CPUs (Zen 3) its small and mid-sized products are slower than its Intel AVX2 path (measured
/// on a 2-core Zen 3, four alternating pairs of processes: a TSC step, whose matmuls have 128 rows, 0.26–0.32 s
/// against 0.18–0.23 s with the answer forced).</item>
/// </list>
/// libtorch_cpu.so calls that function through its procedure linkage table, so this class points the table's slot at a
/// function that answers yes (the kernels still check each instruction set they use: only the vendor test changes).
/// Nothing is done on Intel CPUs, CPUs without AVX2, other operating systems, a libtorch without that symbol, or with
/// <c>ELLA_MKL_DISPATCH=vendor</c>. It must run before the first matmul: MKL caches its choice.
/// </summary>
public static unsafe class MklCpuDispatch
{
    const string Symbol = "mkl_serv_intel_cpu_true";
    const uint R_X86_64_JUMP_SLOT = 7;

    /// <summary>What <see cref="Apply"/> did, for <c>ella info</c> and <c>ella bench</c>.</summary>
    public static string State { get; private set; } = "not applied";

    /// <summary>Whether MKL now takes its Intel code paths (AVX-512 where the CPU has it) on this AMD CPU.</summary>
    public static bool Applied { get; private set; }

    static bool _attempted;

    [UnmanagedCallersOnly]
    static int IntelCpuTrue() => 1;

    [DllImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    static extern int Mprotect(IntPtr address, UIntPtr length, int protection);

    const int ProtRead = 1, ProtWrite = 2;

    /// <summary>Applies the change once, when the CPU is an AMD one with AVX2 and libtorch_cpu.so is loaded.</summary>
    public static void Apply(CpuInfo? cpu = null)
    {
        if (_attempted) return;
        _attempted = true;
        cpu ??= CpuInfo.Current;
        string? setting = Environment.GetEnvironmentVariable("ELLA_MKL_DISPATCH")?.Trim().ToLowerInvariant();
        if (setting is "vendor")
        {
            State = "MKL's own vendor dispatch (ELLA_MKL_DISPATCH=vendor)";
            return;
        }
        if (setting is not (null or "" or "auto"))
        {
            _attempted = false;
            throw new EllaException($"ELLA_MKL_DISPATCH: '{setting}' is not known (choose auto, the default, or vendor)");
        }
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) { State = "not x86-64 Linux: MKL's own dispatch"; return; }
        if (!Qualifies(cpu))
        {
            State = "MKL's own dispatch (needed only on AMD CPUs)";
            return;
        }
        try
        {
            var (path, baseAddress) = FindLibrary("libtorch_cpu.so");
            if (path == null) { State = "libtorch_cpu.so is not loaded: MKL's own dispatch"; return; }
            long? slotOffset = JumpSlotOffset(path, Symbol);
            if (slotOffset == null) { State = $"{Symbol} is not called through libtorch_cpu.so's PLT: MKL's own dispatch"; return; }
            var slot = (nint*)(baseAddress + slotOffset.Value);
            long page = (long)slot & ~4095L;
            // A lazily bound GOT is writable already (the dynamic linker writes other slots of this page later: it
            // must stay writable); a RELRO one is read-only and goes back to read-only.
            bool writable = IsWritable((long)slot);
            if (!writable && Mprotect((IntPtr)page, 4096, ProtRead | ProtWrite) != 0) { State = $"mprotect failed (errno {Marshal.GetLastPInvokeError()}): MKL's own dispatch"; return; }
            *slot = (nint)(delegate* unmanaged<int>)&IntelCpuTrue;
            if (!writable) Mprotect((IntPtr)page, 4096, ProtRead);
            Applied = true;
            State = $"MKL takes its Intel code paths ({(cpu.Has("avx512f") ? "AVX-512" : "AVX2")}) on this AMD CPU (its vendor test answered yes; ELLA_MKL_DISPATCH=vendor turns it off)";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or InvalidDataException or DllNotFoundException or EntryPointNotFoundException)
        {
            State = $"MKL's own dispatch ({e.Message})";
        }
    }

    /// <summary>Whether <see cref="Apply"/> changes MKL's dispatch on <paramref name="cpu"/>: an AMD CPU with AVX2.</summary>
    public static bool Qualifies(CpuInfo cpu) => cpu.Vendor.Contains("AMD", StringComparison.OrdinalIgnoreCase) && cpu.Has("avx2");

    /// <summary>Whether the mapping that holds <paramref name="address"/> is writable, from /proc/self/maps.</summary>
    static bool IsWritable(long address)
    {
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var parts = line.Split(' ', 3, StringSplitOptions.RemoveEmptyEntries);
            var range = parts[0].Split('-');
            long start = Convert.ToInt64(range[0], 16), end = Convert.ToInt64(range[1], 16);
            if (address >= start && address < end) return parts[1].Length > 1 && parts[1][1] == 'w';
        }
        return false;
    }

    /// <summary>The file and load address (the mapping of file offset 0) of a loaded shared library, from /proc/self/maps.</summary>
    internal static (string? Path, long Base) FindLibrary(string fileName)
    {
        foreach (var line in File.ReadLines("/proc/self/maps"))
        {
            var parts = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 6 || !parts[5].EndsWith("/" + fileName, StringComparison.Ordinal) || parts[2] != "00000000") continue;
            return (parts[5].Trim(), Convert.ToInt64(parts[0].Split('-')[0], 16));
        }
        return (null, 0);
    }

    /// <summary>The address (relative to the load address) of the GOT slot that <c>.rela.plt</c> binds to <paramref name="symbol"/>.</summary>
    internal static long? JumpSlotOffset(string elfPath, string symbol)
    {
        using var file = MemoryMappedFile.CreateFromFile(elfPath, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        if (view.ReadUInt32(0) != 0x464C457F || view.ReadByte(4) != 2) throw new InvalidDataException($"{elfPath}: not a 64-bit ELF file");
        long shoff = view.ReadInt64(0x28);
        int shentsize = view.ReadUInt16(0x3A), shnum = view.ReadUInt16(0x3C), shstrndx = view.ReadUInt16(0x3E);
        long Section(int i) => shoff + (long)i * shentsize;
        long namesOffset = view.ReadInt64(Section(shstrndx) + 24);
        string ReadString(long offset)
        {
            var bytes = new List<byte>();
            for (byte b; (b = view.ReadByte(offset)) != 0; offset++) bytes.Add(b);
            return Encoding.ASCII.GetString(bytes.ToArray());
        }
        for (int i = 0; i < shnum; i++)
        {
            long sh = Section(i);
            if (ReadString(namesOffset + view.ReadUInt32(sh)) != ".rela.plt") continue;
            long relaOffset = view.ReadInt64(sh + 24), relaSize = view.ReadInt64(sh + 32);
            long dynsym = Section((int)view.ReadUInt32(sh + 40));
            long symOffset = view.ReadInt64(dynsym + 24);
            long strOffset = view.ReadInt64(Section((int)view.ReadUInt32(dynsym + 40)) + 24);
            byte[] wanted = Encoding.ASCII.GetBytes(symbol);
            for (long r = relaOffset; r < relaOffset + relaSize; r += 24)
            {
                ulong info = view.ReadUInt64(r + 8);
                if ((uint)info != R_X86_64_JUMP_SLOT) continue;
                long name = strOffset + view.ReadUInt32(symOffset + (long)(info >> 32) * 24);
                bool match = true;
                for (int k = 0; k <= wanted.Length && match; k++)
                    match = view.ReadByte(name + k) == (k < wanted.Length ? wanted[k] : 0);
                if (match) return view.ReadInt64(r);
            }
        }
        return null;
    }
}
