namespace Ella.Pipelines;

/// <summary>
/// Resolves the model paths users pass: a path as is, or a Hugging Face repo id ("org/name") looked up OFFLINE in the
/// local Hugging Face cache (<c>$HF_HUB_CACHE</c>, else <c>$HF_HOME/hub</c>, else <c>~/.cache/huggingface/hub</c>):
/// <c>models--org--name/snapshots/&lt;rev&gt;/</c>, the revision <c>refs/main</c> names, else the newest. Nothing is
/// ever downloaded.
/// </summary>
public static class ModelLocator
{
    public static string HubCache()
    {
        if (Environment.GetEnvironmentVariable("HF_HUB_CACHE") is { Length: > 0 } hub) return hub;
        if (Environment.GetEnvironmentVariable("HF_HOME") is { Length: > 0 } home) return Path.Combine(home, "hub");
        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "huggingface", "hub");
    }

    /// <summary>The value of a path option, else the environment variable, else an error that names both.</summary>
    public static string Require(string? value, string envVar, string option, string what)
    {
        var v = value ?? Environment.GetEnvironmentVariable(envVar);
        if (string.IsNullOrWhiteSpace(v)) throw new EllaException($"{what} is required: pass {option} PATH or set {envVar}");
        return Resolve(v, option);
    }

    /// <summary>A file or folder that exists, or a repo id found in the local cache.</summary>
    public static string Resolve(string value, string option)
    {
        if (File.Exists(value) || Directory.Exists(value)) return value;
        var parts = value.Split('/');
        if (parts.Length == 2 && parts.All(p => p.Length > 0 && !p.Contains('\\')) && !value.StartsWith('.'))
        {
            string repo = Path.Combine(HubCache(), $"models--{parts[0]}--{parts[1]}");
            string snapshots = Path.Combine(repo, "snapshots");
            if (Directory.Exists(snapshots))
            {
                string? rev = File.Exists(Path.Combine(repo, "refs", "main")) ? File.ReadAllText(Path.Combine(repo, "refs", "main")).Trim() : null;
                string? chosen = rev != null && Directory.Exists(Path.Combine(snapshots, rev)) ? Path.Combine(snapshots, rev)
                    : Directory.GetDirectories(snapshots).OrderByDescending(Directory.GetLastWriteTimeUtc).FirstOrDefault();
                if (chosen != null) return chosen;
            }
            throw new EllaException($"{option} {value}: not a file or folder, and not in the local Hugging Face cache ({repo}). " +
                                    "EllaSharp never downloads models: download it first (e.g. huggingface-cli download " + value + ") or pass a local path.");
        }
        throw new EllaException($"{option} {value}: no such file or folder");
    }

    /// <summary>The ELLA connector file: the path itself, or the one .safetensors in a folder (preferring names with "ella").</summary>
    public static string EllaFile(string path)
    {
        if (File.Exists(path)) return path;
        var files = Directory.GetFiles(path, "*.safetensors");
        var ella = files.Where(f => Path.GetFileName(f).Contains("sd1.5", StringComparison.OrdinalIgnoreCase)).Concat(files.Where(f => Path.GetFileName(f).Contains("ella", StringComparison.OrdinalIgnoreCase))).Concat(files).FirstOrDefault();
        return ella ?? throw new EllaException($"{path}: no ELLA .safetensors file in this folder (expected ella-sd1.5-tsc-t5xl.safetensors)");
    }
}
