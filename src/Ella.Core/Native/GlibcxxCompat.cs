// TorchSharp 0.107's libLibTorchSharp.so asks for GLIBCXX_3.4.32 only because it references
// std::ios_base_library_init(), a symbol it never calls. Debian 12 ships libstdc++ up to 3.4.30, so the
// dynamic loader refuses the library. Marking that single version requirement WEAK (vna_flags |= VER_FLG_WEAK)
// in the .gnu.version_r section lets the loader accept it; everything the library actually calls is older.
//
// This one file serves two callers:
//   * the build (Directory.Build.targets compiles it as an inline MSBuild task, see the #if block at the end), and
//   * the program (Ella.Core compiles it with ELLA_CORE defined and calls it before the first torch call).
// It only ever rewrites the project's own output copy, atomically, and never a file inside a NuGet package cache.
// Written against netstandard2.0 APIs so the MSBuild task factory can compile it.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Ella.Native
{
    /// <summary>Outcome of <see cref="GlibcxxCompat.Apply"/>.</summary>
    public enum GlibcxxPatchResult
    {
        /// <summary>The system libstdc++ already defines the version (or this is not Linux): nothing to do.</summary>
        NotNeeded,
        /// <summary>The requirement was already marked weak by an earlier run.</summary>
        AlreadyPatched,
        /// <summary>The library does not require the version at all.</summary>
        NoSuchRequirement,
        /// <summary>The requirement was marked weak now.</summary>
        Patched,
    }

    public static class GlibcxxCompat
    {
        public const string Version = "GLIBCXX_3.4.32";
        public const string LibraryFileName = "libLibTorchSharp.so";
        const ushort VerFlgWeak = 0x2;
        const uint ShtGnuVerdef = 0x6ffffffd;
        const uint ShtGnuVerneed = 0x6ffffffe;

        /// <summary>
        /// Marks the <see cref="Version"/> requirement of <paramref name="libraryPath"/> weak when
        /// <paramref name="systemLibstdcxx"/> lacks it. Idempotent. Throws <see cref="InvalidDataException"/> for a file
        /// that is not the ELF64 library expected, and <see cref="InvalidOperationException"/> for a path inside a NuGet cache.
        /// </summary>
        public static GlibcxxPatchResult Apply(string libraryPath, string? systemLibstdcxx)
        {
            if (systemLibstdcxx == null || DefinesVersion(File.ReadAllBytes(systemLibstdcxx), Version))
                return GlibcxxPatchResult.NotNeeded;
            return MarkRequirementWeak(libraryPath, Version);
        }

        /// <summary>Marks one version requirement weak in a copy of a library; never touches a NuGet cache.</summary>
        public static GlibcxxPatchResult MarkRequirementWeak(string libraryPath, string version)
        {
            string full = Path.GetFullPath(libraryPath);
            if (IsInsideNuGetCache(full))
                throw new InvalidOperationException($"{full}: refusing to modify a file inside the NuGet package cache; patch the build output copy instead.");
            byte[] elf = File.ReadAllBytes(full);
            long flagsOffset = FindRequirementFlagsOffset(elf, version, full);
            if (flagsOffset < 0) return GlibcxxPatchResult.NoSuchRequirement;
            ushort flags = ReadU16(elf, flagsOffset);
            if ((flags & VerFlgWeak) != 0) return GlibcxxPatchResult.AlreadyPatched;
            flags |= VerFlgWeak;
            elf[flagsOffset] = (byte)(flags & 0xff);
            elf[flagsOffset + 1] = (byte)(flags >> 8);

            // Write a new file and rename it over the old one: a hard link to a cache file is broken, never written through.
            DateTime stamp = File.GetLastWriteTimeUtc(full);
            string tmp = full + ".glibcxx-patch.tmp";
            File.WriteAllBytes(tmp, elf);
            File.SetLastWriteTimeUtc(tmp, stamp); // keep the copy "unchanged" for incremental builds
            if (File.Exists(full)) File.Delete(full);
            File.Move(tmp, full);
            return GlibcxxPatchResult.Patched;
        }

        /// <summary>True when the requirement on <paramref name="version"/> exists and is already weak.</summary>
        public static bool IsRequirementWeak(string libraryPath, string version)
        {
            byte[] elf = File.ReadAllBytes(libraryPath);
            long at = FindRequirementFlagsOffset(elf, version, libraryPath);
            return at >= 0 && (ReadU16(elf, at) & VerFlgWeak) != 0;
        }

        /// <summary>Lists every version a library requires, as "file:version".</summary>
        public static List<string> ListRequirements(byte[] elf, string name)
        {
            var result = new List<string>();
            foreach (var r in Requirements(elf, name)) result.Add(r.File + ":" + r.Version);
            return result;
        }

        struct Requirement
        {
            public string File;
            public string Version;
            public long FlagsOffset;
        }

        /// <summary>Every vernaux entry of the .gnu.version_r section(s): the file, the version and where its flags are.</summary>
        static IEnumerable<Requirement> Requirements(byte[] elf, string name)
        {
            foreach (var s in Sections(elf, name))
            {
                if (s.Type != ShtGnuVerneed) continue;
                var strtab = SectionAt(elf, s.Link, name);
                long entry = s.Offset;
                for (uint i = 0; i < s.Info; i++)
                {
                    Check(elf, entry, 16, name);
                    ushort count = ReadU16(elf, entry + 2);
                    string file = ReadString(elf, strtab.Offset + ReadU32(elf, entry + 4), name);
                    long aux = entry + ReadU32(elf, entry + 8);
                    for (int j = 0; j < count; j++)
                    {
                        Check(elf, aux, 16, name);
                        yield return new Requirement { File = file, Version = ReadString(elf, strtab.Offset + ReadU32(elf, aux + 8), name), FlagsOffset = aux + 4 };
                        uint nextAux = ReadU32(elf, aux + 12);
                        if (nextAux == 0) break;
                        aux += nextAux;
                    }
                    uint next = ReadU32(elf, entry + 12);
                    if (next == 0) break;
                    entry += next;
                }
            }
        }

        /// <summary>True when an ELF shared library (e.g. libstdc++.so.6) defines the symbol version.</summary>
        public static bool DefinesVersion(byte[] elf, string version)
        {
            foreach (var s in Sections(elf, "libstdc++"))
            {
                if (s.Type != ShtGnuVerdef) continue;
                var strtab = SectionAt(elf, s.Link, "libstdc++");
                long entry = s.Offset;
                for (uint i = 0; i < s.Info; i++)
                {
                    Check(elf, entry, 20, "libstdc++");
                    ushort count = ReadU16(elf, entry + 6);
                    long aux = entry + ReadU32(elf, entry + 12);
                    if (count > 0)
                    {
                        Check(elf, aux, 8, "libstdc++");
                        if (ReadString(elf, strtab.Offset + ReadU32(elf, aux), "libstdc++") == version) return true;
                    }
                    uint next = ReadU32(elf, entry + 16);
                    if (next == 0) break;
                    entry += next;
                }
            }
            return false;
        }

        /// <summary>
        /// The libstdc++.so.6 that this process uses (from /proc/self/maps: the .NET host links it, so it is the one the
        /// loader will bind), else the first one found in the usual library folders; null when not on Linux or none found.
        /// </summary>
        public static string? FindSystemLibstdcxx()
        {
            if (!File.Exists("/proc/self/maps")) return null;
            try
            {
                foreach (var line in File.ReadAllLines("/proc/self/maps"))
                {
                    int slash = line.IndexOf('/');
                    if (slash >= 0 && line.EndsWith("/libstdc++.so.6", StringComparison.Ordinal) || slash >= 0 && line.Contains("/libstdc++.so.6."))
                    {
                        string path = line.Substring(slash).Trim();
                        if (File.Exists(path)) return path;
                    }
                }
            }
            catch (IOException) { }
            foreach (var dir in new[] { "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64", "/usr/lib", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu" })
            {
                string candidate = Path.Combine(dir, "libstdc++.so.6");
                if (File.Exists(candidate)) return candidate;
            }
            return null;
        }

        static bool IsInsideNuGetCache(string fullPath)
        {
            var roots = new List<string>();
            string? env = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
            if (!string.IsNullOrEmpty(env)) roots.Add(env!);
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (!string.IsNullOrEmpty(home)) roots.Add(Path.Combine(home, ".nuget", "packages"));
            roots.Add("/opt/nuget/packages");
            foreach (var root in roots)
            {
                string r = Path.GetFullPath(root).TrimEnd('/') + "/";
                if (fullPath.StartsWith(r, StringComparison.Ordinal)) return true;
            }
            return false;
        }

        static long FindRequirementFlagsOffset(byte[] elf, string version, string name)
        {
            foreach (var r in Requirements(elf, name))
                if (r.Version == version) return r.FlagsOffset;
            return -1;
        }

        struct Section
        {
            public uint Type;
            public long Offset;
            public long Size;
            public uint Link;
            public uint Info;
        }

        static IEnumerable<Section> Sections(byte[] elf, string name)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException($"{name}: not an ELF file");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException($"{name}: only 64-bit little-endian ELF is supported");
            long shoff = (long)ReadU64(elf, 0x28);
            int shentsize = ReadU16(elf, 0x3A);
            int shnum = ReadU16(elf, 0x3C);
            if (shentsize < 64) throw new InvalidDataException($"{name}: bad section header size {shentsize}");
            for (int i = 0; i < shnum; i++)
                yield return SectionAtOffset(elf, shoff + (long)i * shentsize, name);
        }

        static Section SectionAt(byte[] elf, uint index, string name)
        {
            long shoff = (long)ReadU64(elf, 0x28);
            int shentsize = ReadU16(elf, 0x3A);
            if (index >= ReadU16(elf, 0x3C)) throw new InvalidDataException($"{name}: section index {index} out of range");
            return SectionAtOffset(elf, shoff + (long)index * shentsize, name);
        }

        static Section SectionAtOffset(byte[] elf, long at, string name)
        {
            Check(elf, at, 64, name);
            var s = new Section
            {
                Type = ReadU32(elf, at + 4),
                Offset = (long)ReadU64(elf, at + 0x18),
                Size = (long)ReadU64(elf, at + 0x20),
                Link = ReadU32(elf, at + 0x28),
                Info = ReadU32(elf, at + 0x2C),
            };
            return s;
        }

        static void Check(byte[] elf, long at, int size, string name)
        {
            if (at < 0 || at + size > elf.Length) throw new InvalidDataException($"{name}: truncated or corrupt ELF (offset {at})");
        }

        static ushort ReadU16(byte[] b, long at) => (ushort)(b[at] | b[at + 1] << 8);
        static uint ReadU32(byte[] b, long at) => (uint)(b[at] | b[at + 1] << 8 | b[at + 2] << 16 | b[at + 3] << 24);
        static ulong ReadU64(byte[] b, long at) => ReadU32(b, at) | (ulong)ReadU32(b, at + 4) << 32;

        static string ReadString(byte[] b, long at, string name)
        {
            if (at < 0 || at >= b.Length) throw new InvalidDataException($"{name}: string offset {at} out of range");
            long end = at;
            while (end < b.Length && b[end] != 0) end++;
            return Encoding.ASCII.GetString(b, (int)at, (int)(end - at));
        }
    }
}

#if !ELLA_CORE
namespace Ella.Build
{
    /// <summary>MSBuild task: patches the output copies of libLibTorchSharp.so when this machine's libstdc++ needs it.</summary>
    public class PatchLibTorchSharp : Microsoft.Build.Utilities.Task
    {
        /// <summary>Candidate paths of the output copy; missing ones are ignored.</summary>
        public string[] Libraries { get; set; } = System.Array.Empty<string>();

        public override bool Execute()
        {
            string? libstdcxx = Ella.Native.GlibcxxCompat.FindSystemLibstdcxx();
            foreach (string lib in Libraries)
            {
                if (!System.IO.File.Exists(lib)) continue;
                try
                {
                    var result = Ella.Native.GlibcxxCompat.Apply(lib, libstdcxx);
                    if (result == Ella.Native.GlibcxxPatchResult.Patched)
                        Log.LogMessage(Microsoft.Build.Framework.MessageImportance.High,
                            $"EllaSharp: marked {Ella.Native.GlibcxxCompat.Version} weak in {lib} (system libstdc++ {libstdcxx} lacks it)");
                }
                catch (System.Exception e)
                {
                    Log.LogError($"EllaSharp: could not patch {lib}: {e.Message}");
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
}
#endif
