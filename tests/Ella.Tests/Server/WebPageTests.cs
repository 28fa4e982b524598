using System.Drawing;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using Xunit.Abstractions;

namespace Ella.Tests.Server;

/// <summary>
/// The web page in a real browser: Debian's chromium driven headless through chromium-driver (Selenium). Loads the
/// page, enters a prompt, generates, waits for the image, checks its size and parameters, cancels a second job, checks
/// phone width, and saves screenshots under the test output folder (artifacts/).
/// </summary>
public sealed class WebPageTests(TinyModels models, ITestOutputHelper output) : IClassFixture<TinyModels>
{
    static string? Find(params string[] paths) => paths.FirstOrDefault(File.Exists);

    /// <summary>A 2×2 box-filtered copy (the README's screenshot).</summary>
    static Ella.Imaging.RgbImage HalfSize(Ella.Imaging.RgbImage image)
    {
        var half = new Ella.Imaging.RgbImage(image.Width / 2, image.Height / 2);
        for (int y = 0; y < half.Height; y++)
            for (int x = 0; x < half.Width; x++)
                for (int c = 0; c < 3; c++)
                {
                    int sum = 0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) sum += image.Pixels[((2 * y + dy) * image.Width + 2 * x + dx) * 3 + c];
                    half.Pixels[(y * half.Width + x) * 3 + c] = (byte)((sum + 2) / 4);
                }
        return half;
    }

    public static string ArtifactDir => Path.Combine(AppContext.BaseDirectory, "artifacts");

    [Fact]
    public async Task Page_generates_shows_parameters_cancels_and_fits_a_phone()
    {
        string? chromium = Find("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome");
        string? chromedriver = Find("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver");
        Assert.True(chromium != null && chromedriver != null,
            "the browser test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver (.ci/run installs them)");

        await using var server = await models.StartAsync(TinyModels.Options(o => o with { Defaults = o.Defaults with { Steps = 2, Width = 64, Height = 64 } }));
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(chromedriver)!, Path.GetFileName(chromedriver));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        var options = new ChromeOptions { BinaryLocation = chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900", "--hide-scrollbars");
        using var driver = new ChromeDriver(service, options, TimeSpan.FromMinutes(3));
        var js = (IJavaScriptExecutor)driver;
        T Js<T>(string script) => (T)js.ExecuteScript(script)!;
        void WaitUntil(Func<bool> condition, string what, int seconds = 300)
        {
            var deadline = DateTime.UtcNow.AddSeconds(seconds);
            while (!condition())
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"page: {what}; status '{driver.FindElement(By.Id("status")).Text}', error '{Js<string>("return document.getElementById('error').textContent")}'");
                Thread.Sleep(50);
            }
        }

        driver.Navigate().GoToUrl(server.BaseAddress!);
        WaitUntil(() => driver.FindElement(By.Id("model")).Text == "ella-tiny", "model name shown");
        Assert.Equal("64", driver.FindElement(By.Id("width")).GetAttribute("value"));
        Assert.Equal("2", driver.FindElement(By.Id("steps")).GetAttribute("value"));

        // 1. Generate one image.
        driver.FindElement(By.Id("prompt")).SendKeys("a red fox sitting in fresh snow");
        var seed = driver.FindElement(By.Id("seed"));
        seed.Clear();
        seed.SendKeys("42");
        var button = driver.FindElement(By.Id("generate"));
        button.Click();
        WaitUntil(() => driver.FindElements(By.CssSelector("#gallery .card img")).Count == 1 && Js<bool>("const i = document.querySelector('#gallery .card img'); return i.complete && i.naturalWidth > 0"), "image in the gallery");
        Assert.Equal(64L, Js<long>("return document.querySelector('#gallery .card img').naturalWidth"));
        Assert.Equal(64L, Js<long>("return document.querySelector('#gallery .card img').naturalHeight"));
        string parameters = Js<string>("return document.querySelector('#gallery .card pre.params').textContent");
        Assert.StartsWith("a red fox sitting in fresh snow\nNegative prompt: \nSteps: 2, ", parameters);
        Assert.Contains("Seed: 42", parameters);
        Assert.Contains("Size: 64x64", parameters);
        Assert.Equal("Generate", button.Text);
        Assert.Equal(1L, Js<long>("return JSON.parse(localStorage.getItem('ella.history')).length"));

        // 2. A long second job, cancelled from the page while it runs.
        var steps = driver.FindElement(By.Id("steps"));
        steps.Clear();
        steps.SendKeys("150");
        button.Click();
        WaitUntil(() => button.Text == "Cancel" && driver.FindElement(By.Id("status")).Text.StartsWith("step "), "second job running");
        button.Click();
        WaitUntil(() => driver.FindElement(By.Id("status")).Text == "cancelled" && button.Text == "Generate", "second job cancelled");
        Assert.Single(driver.FindElements(By.CssSelector("#gallery .card")));
        Assert.Equal(1, server.Metrics.Jobs.WithLabels("cancelled").Value);

        // 3. Back to the first image's settings; then ELLA vs CLIP on one seed, side by side.
        driver.FindElement(By.CssSelector("#gallery .card:last-child button.reuse")).Click();
        Assert.Equal("2", steps.GetAttribute("value"));
        driver.FindElement(By.Id("compare")).Click();
        WaitUntil(() => driver.FindElements(By.CssSelector("#compare-ella img")).Count == 1 && driver.FindElements(By.CssSelector("#compare-clip img")).Count == 1, "compare view filled");
        Assert.Equal(3, driver.FindElements(By.CssSelector("#gallery .card")).Count);
        string[] modes = [.. driver.FindElements(By.CssSelector("#gallery .card pre.params")).Take(2).Select(e => (string)js.ExecuteScript("return arguments[0].textContent", e)!)];
        Assert.Contains(modes, m => m.Contains("Mode: ella,") && m.Contains("Seed: 42"));
        Assert.Contains(modes, m => m.Contains("Mode: clip,") && m.Contains("Seed: 42"));
        Directory.CreateDirectory(ArtifactDir);
        string shot = Path.Combine(ArtifactDir, "serve-page.png");
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(shot);
        output.WriteLine($"screenshot: {shot}");
        File.WriteAllBytes(Path.Combine(ArtifactDir, "serve-page-small.png"), HalfSize(Ella.Imaging.RgbImage.Load(shot)).EncodePng());

        // 4. Phone width: nothing overflows sideways.
        driver.Manage().Window.Size = new Size(390, 844);
        Thread.Sleep(200);
        Assert.True(Js<bool>("return document.documentElement.scrollWidth <= window.innerWidth + 1"), "the page scrolls sideways at phone width");
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(ArtifactDir, "serve-page-phone.png"));
    }
}
