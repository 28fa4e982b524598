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
        await using var serve = await ServeProcess.StartAsync(models, "--width", "64", "--height", "64", "--steps", "2", "--shutdown-timeout", "1");
        var process = serve.Process;
        using var http = new HttpClient { BaseAddress = serve.Url, Timeout = TimeSpan.FromMinutes(5) };
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
        Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {rest}\n{await serve.Stderr}");
        Assert.Contains("ella serve: stopped", rest);
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
