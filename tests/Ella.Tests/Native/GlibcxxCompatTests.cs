using Ella.Native;
using Ella.Tests.Infrastructure;

namespace Ella.Tests.Native;

public sealed class GlibcxxCompatTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("ella-elf-").FullName;
    public void Dispose() => Directory.Delete(_dir, true);

    static string PackageCopy()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
            ? p : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", GlibcxxCompat.LibraryFileName);
    }

    [Fact]
    public void Marks_only_that_requirement_weak_and_is_idempotent()
    {
        string original = PackageCopy();
        Assert.True(File.Exists(original), original);
        string copy = Path.Combine(_dir, GlibcxxCompat.LibraryFileName);
        File.Copy(original, copy);
        byte[] before = File.ReadAllBytes(copy);
        Assert.Contains("libstdc++.so.6:" + GlibcxxCompat.Version, GlibcxxCompat.ListRequirements(before, copy));
        Assert.False(GlibcxxCompat.IsRequirementWeak(copy, GlibcxxCompat.Version));

        Assert.Equal(GlibcxxPatchResult.Patched, GlibcxxCompat.MarkRequirementWeak(copy, GlibcxxCompat.Version));
        byte[] after = File.ReadAllBytes(copy);
        Assert.True(GlibcxxCompat.IsRequirementWeak(copy, GlibcxxCompat.Version));
        Assert.Equal(before.Length, after.Length);
        Assert.Single(Enumerable.Range(0, before.Length), i => before[i] != after[i]); // one flag byte

        Assert.Equal(GlibcxxPatchResult.AlreadyPatched, GlibcxxCompat.MarkRequirementWeak(copy, GlibcxxCompat.Version));
        Assert.Equal(after, File.ReadAllBytes(copy));
        Assert.Equal(GlibcxxPatchResult.NoSuchRequirement, GlibcxxCompat.MarkRequirementWeak(copy, "GLIBCXX_9.9.9"));
        Assert.False(GlibcxxCompat.IsRequirementWeak(original, GlibcxxCompat.Version)); // the package is untouched
    }

    [Fact]
    public void Does_nothing_when_the_system_library_has_the_version()
    {
        string copy = Path.Combine(_dir, GlibcxxCompat.LibraryFileName);
        File.Copy(PackageCopy(), copy);
        // A "system" libstdc++ that defines every version the library needs: the library itself does not, so use a
        // synthetic check through DefinesVersion on the real system library instead.
        string? system = GlibcxxCompat.FindSystemLibstdcxx();
        Assert.NotNull(system);
        bool has = GlibcxxCompat.DefinesVersion(File.ReadAllBytes(system!), GlibcxxCompat.Version);
        Assert.True(GlibcxxCompat.DefinesVersion(File.ReadAllBytes(system!), "GLIBCXX_3.4.30"));
        var result = GlibcxxCompat.Apply(copy, system);
        Assert.Equal(has ? GlibcxxPatchResult.NotNeeded : GlibcxxPatchResult.Patched, result);
        Assert.Equal(GlibcxxPatchResult.NotNeeded, GlibcxxCompat.Apply(copy, null));
    }

    [Fact]
    public void Refuses_to_touch_the_package_cache()
    {
        Assert.Throws<InvalidOperationException>(() => GlibcxxCompat.MarkRequirementWeak(PackageCopy(), GlibcxxCompat.Version));
    }

    [Fact]
    public void The_test_output_copy_loads()
    {
        // If the build had not patched this copy on a system that needs it, no torch test could run at all;
        // assert the state explicitly so the reason is visible.
        string? lib = TorchRuntime.NativeLibraryPath();
        Assert.NotNull(lib);
        string? system = GlibcxxCompat.FindSystemLibstdcxx();
        if (system != null && !GlibcxxCompat.DefinesVersion(File.ReadAllBytes(system), GlibcxxCompat.Version))
            Assert.True(GlibcxxCompat.IsRequirementWeak(lib!, GlibcxxCompat.Version));
        using var t = TorchSharp.torch.ones(2, 2);
        Assert.Equal(4f, t.sum().item<float>());
    }

    [Fact]
    public void Rejects_files_that_are_not_elf()
    {
        string bogus = Path.Combine(_dir, "bogus.so");
        File.WriteAllBytes(bogus, new byte[100]);
        Assert.Throws<InvalidDataException>(() => GlibcxxCompat.MarkRequirementWeak(bogus, GlibcxxCompat.Version));
    }
}
