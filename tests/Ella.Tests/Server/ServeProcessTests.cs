using System.Diagnostics;
using System.Net;
using Ella.Tests.Infrastructure;

namespace Ella.Tests.Server;

/// <summary><c>ella serve</c> as a real process: it serves, and SIGTERM during a job stops it cleanly with exit code 0.</summary>
public sealed class ServeProcessTests(TinyModels models) : IClassFixture<TinyModels>
{
    [Fact]
    public async Task Sigterm_during_a_job_cancels_it_within_the_shutdown_timeout_and_exits_0()
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(AppContext.BaseDirectory, "ella.dll"), "serve", "--sd", models.Load.StableDiffusion, "--t5", models.Load.T5!, "--ella", models.Load.Ella!,
                     "--port", "0", "--width", "64", "--height", "64", "--steps", "2", "--shutdown-timeout", "1" })
            psi.ArgumentList.Add(a);
        psi.Environment.Remove("ELLA_API_KEY");
        using var process = Process.Start(psi)!;
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            string? url = null;
            var lines = new List<string>();
            using (var startup = new CancellationTokenSource(TimeSpan.FromMinutes(5)))
                while (url == null && await process.StandardOutput.ReadLineAsync(startup.Token) is { } line)
                {
                    lines.Add(line);
                    if (line.StartsWith("ella serve: ready on ")) url = line["ella serve: ready on ".Length..];
                }
            Assert.True(url != null, string.Join("\n", lines) + "\n" + (process.HasExited ? await stderr : ""));
            using var http = new HttpClient { BaseAddress = new Uri(url!), Timeout = TimeSpan.FromMinutes(5) };
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("health")).StatusCode);
            var inFlight = http.PostJson("v1/images/generations", new { prompt = "interrupted by SIGTERM", steps = 150 });
            for (int i = 0; i < 3000; i++)
            {
                var p = await (await http.GetAsync("sdapi/v1/progress")).Json();
                if (p.GetProperty("state").GetProperty("sampling_step").GetInt32() > 0) break;
                await Task.Delay(20);
            }
            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString()])) await kill.WaitForExitAsync();
            // The in-flight request ends (the job is cancelled after --shutdown-timeout): an answer or a closed connection.
            try { Assert.Equal(HttpStatusCode.Conflict, (await inFlight).StatusCode); }
            catch (HttpRequestException) { }
            using (var exit = new CancellationTokenSource(TimeSpan.FromMinutes(2))) await process.WaitForExitAsync(exit.Token);
            string rest = await process.StandardOutput.ReadToEndAsync();
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {rest}\n{await stderr}");
            Assert.Contains("ella serve: stopped", rest);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }

    [Fact]
    public void Bad_serve_flags_are_one_line_errors_with_exit_2()
    {
        var r = CliRunner.Run("serve", "--sd", models.Load.StableDiffusion, "--mode", "clip", "--host", "example.com");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--host example.com", r.Error);
        r = CliRunner.Run("serve", "--sd", models.Load.StableDiffusion, "--mode", "clip", "--max-queue", "0");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--max-queue", r.Error);
        r = CliRunner.Run("serve", "--sd", Path.Combine(models.Dir, "nope"));
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("nope", r.Error);
    }
}
