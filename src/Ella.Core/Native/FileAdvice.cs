using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Ella.Native;

/// <summary>
/// Read-ahead hints for checkpoint files (Linux): tell the kernel a tensor range is about to be read in full, so it
/// issues large asynchronous reads instead of faulting 4 KB pages one by one. Best effort: a no-op elsewhere.
/// </summary>
internal static class FileAdvice
{
    const int PosixFadvWillNeed = 3;
    const int PosixFadvSequential = 2;

    [DllImport("libc", EntryPoint = "posix_fadvise", SetLastError = false)]
    static extern int PosixFadvise(int fd, long offset, long length, int advice);

    [DllImport("libc", EntryPoint = "madvise", SetLastError = false)]
    static extern int Madvise(IntPtr address, UIntPtr length, int advice);

    const int MadvHugePage = 14;
    const long HugePage = 2 << 20;

    /// <summary>
    /// Asks for transparent huge pages on a fresh, untouched buffer (THP "madvise" mode): the first write then faults
    /// 2 MB at a time instead of 4 KB, which is most of the cost of filling gigabytes of new weights.
    /// </summary>
    public static unsafe void HugePages(byte* address, long length)
    {
        if (!OperatingSystem.IsLinux() || length < 2 * HugePage || Environment.GetEnvironmentVariable("ELLA_NO_HUGEPAGES") == "1") return;
        long start = ((long)address + HugePage - 1) & ~(HugePage - 1);
        long end = ((long)address + length) & ~(HugePage - 1);
        if (end <= start) return;
        try { Madvise((IntPtr)start, (UIntPtr)(ulong)(end - start), MadvHugePage); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    public static void Sequential(SafeFileHandle handle) => Advise(handle, 0, 0, PosixFadvSequential);

    public static void WillNeed(SafeFileHandle handle, long offset, long length) => Advise(handle, offset, length, PosixFadvWillNeed);

    static void Advise(SafeFileHandle handle, long offset, long length, int advice)
    {
        if (!OperatingSystem.IsLinux() || handle.IsInvalid || handle.IsClosed) return;
        try { PosixFadvise((int)handle.DangerousGetHandle(), offset, length, advice); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }
}
