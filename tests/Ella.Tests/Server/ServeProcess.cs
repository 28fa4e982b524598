using System.Diagnostics;

namespace Ella.Tests.Server;

/// <summary><c>ella serve</c> as a real child process on a free loopback port: started, its URL read from its "ready on" line, killed on dispose.</summary>
public sealed class ServeProcess : IAsyncDisposable
{
    public Process Process { get; }
    public Uri Url { get; }
    public Task<string> Stderr { get; }

    ServeProcess(Process process, Uri url, Task<string> stderr) => (Process, Url, Stderr) = (process, url, stderr);

    /// <summary>Starts <c>dotnet ella.dll serve ARGS --port 0</c> and waits (up to 5 minutes) until it is ready.</summary>
    public static async Task<ServeProcess> StartAsync(TinyModels models, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "ella.dll"), "serve", "--sd", models.Load.StableDiffusion, "--t5", models.Load.T5!, "--ella", models.Load.Ella!, "--port", "0" }.Concat(args))
            psi.ArgumentList.Add(a);
        psi.Environment.Remove("ELLA_API_KEY");
        var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string? url = null;
        var lines = new List<string>();
        try
        {
            using var startup = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            while (url == null && await process.StandardOutput.ReadLineAsync(startup.Token) is { } line)
            {
                lines.Add(line);
                if (line.StartsWith("ella serve: ready on ")) url = line["ella serve: ready on ".Length..];
            }
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
        if (url == null)
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
            Assert.Fail(string.Join("\n", lines) + "\n" + (process.HasExited ? await stderr : ""));
        }
        return new ServeProcess(process, new Uri(url!), stderr);
    }

    /// <summary>The child's resident set size (VmRSS of /proc/PID/status), in MiB.</summary>
    public double RssMb()
    {
        foreach (var line in File.ReadLines($"/proc/{Process.Id}/status"))
            if (line.StartsWith("VmRSS:"))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        throw new InvalidOperationException($"no VmRSS in /proc/{Process.Id}/status");
    }

    public async ValueTask DisposeAsync()
    {
        if (!Process.HasExited) Process.Kill(entireProcessTree: true);
        await Process.WaitForExitAsync();
        Process.Dispose();
    }
}
