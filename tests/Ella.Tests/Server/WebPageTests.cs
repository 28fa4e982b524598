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

    /// <summary>Headless chromium through chromium-driver (Debian's packages; .ci/run installs them).</summary>
    static ChromeDriver Browser()
    {
        string? chromium = Find("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome");
        string? chromedriver = Find("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver");
        Assert.True(chromium != null && chromedriver != null,
            "the browser test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver (.ci/run installs them)");
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(chromedriver)!, Path.GetFileName(chromedriver));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        var options = new ChromeOptions { BinaryLocation = chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900", "--hide-scrollbars");
        return new ChromeDriver(service, options, TimeSpan.FromMinutes(3));
    }

    static void Wait(ChromeDriver driver, Func<bool> condition, string what, int seconds = 300)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"page: {what}; status '{driver.FindElement(By.Id("status")).Text}', error '{driver.ExecuteScript("return document.getElementById('error').textContent")}'");
            Thread.Sleep(50);
        }
    }

    [Fact]
    public async Task Page_generates_shows_parameters_cancels_and_fits_a_phone()
    {
        await using var server = await models.StartAsync(TinyModels.Options(o => o with { Defaults = o.Defaults with { Steps = 2, Width = 64, Height = 64 } }));
        using var driver = Browser();
        var js = (IJavaScriptExecutor)driver;
        T Js<T>(string script) => (T)js.ExecuteScript(script)!;
        void WaitUntil(Func<bool> condition, string what, int seconds = 300) => Wait(driver, condition, what, seconds);

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

    [Fact]
    public async Task Page_inpaints_a_painted_mask_with_a_lora_from_the_lora_dir()
    {
        string dir = Directory.CreateTempSubdirectory("ella-page-tools-").FullName;
        try
        {
            var q = models.Pipeline.StableDiffusion.Unet.state_dict()["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"];
            var gen = new TorchSharp.torch.Generator(3);
            Ella.Weights.SafetensorsWriter.Save(Path.Combine(dir, "style.safetensors"), new Dictionary<string, TorchSharp.torch.Tensor>
            {
                ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"] = TorchSharp.torch.randn([2, q.shape[1]], generator: gen),
                ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"] = TorchSharp.torch.randn([q.shape[0], 2], generator: gen),
            });
            var init = new Ella.Imaging.RgbImage(80, 72);
            new Random(5).NextBytes(init.Pixels);
            string initPath = Path.Combine(dir, "init.png");
            init.SavePng(initPath);

            await using var server = await models.StartAsync(TinyModels.Options(o => o with { Defaults = o.Defaults with { Steps = 2, Width = 64, Height = 64, LoraDirectory = dir } }));
            using var driver = Browser();
            var js = (IJavaScriptExecutor)driver;
            T Js<T>(string script) => (T)js.ExecuteScript(script)!;
            driver.Navigate().GoToUrl(server.BaseAddress!);
            Wait(driver, () => driver.FindElement(By.Id("model")).Text == "ella-tiny" && driver.FindElements(By.CssSelector("#lora option")).Count == 2, "model and LoRA list shown");

            driver.FindElement(By.CssSelector("#tools summary")).Click();
            driver.FindElement(By.Id("init-image")).SendKeys(initPath);
            Wait(driver, () => driver.FindElement(By.Id("canvas-box")).Displayed, "init image shown");
            // The size follows the image, rounded down to a multiple of 8.
            Assert.Equal("80", driver.FindElement(By.Id("width")).GetAttribute("value"));
            Assert.Equal("72", driver.FindElement(By.Id("height")).GetAttribute("value"));
            // Paint a stroke across the middle of the image.
            var canvas = driver.FindElement(By.Id("mask-canvas"));
            new OpenQA.Selenium.Interactions.Actions(driver).MoveToElement(canvas, -20, 0).ClickAndHold().MoveByOffset(40, 0).Release().Perform();
            Assert.True(Js<bool>("const c = document.getElementById('mask-canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n > 0 && n < c.width * c.height / 2"), "no stroke painted");
            driver.FindElement(By.Id("strength")).SendKeys("0.6");
            driver.FindElement(By.CssSelector("#lora option[value='style']")).Click();
            var weight = driver.FindElement(By.Id("lora-weight"));
            weight.Clear();
            weight.SendKeys("0.5");
            driver.FindElement(By.Id("prompt")).SendKeys("a small boat");
            driver.FindElement(By.Id("generate")).Click();
            Wait(driver, () => driver.FindElements(By.CssSelector("#gallery .card img")).Count == 1 && Js<bool>("const i = document.querySelector('#gallery .card img'); return i.complete && i.naturalWidth > 0"), "inpainted image in the gallery");
            Assert.Equal(80L, Js<long>("return document.querySelector('#gallery .card img').naturalWidth"));
            string parameters = Js<string>("return document.querySelector('#gallery .card pre.params').textContent");
            Assert.Contains("Denoising strength: 0.6", parameters);
            Assert.Contains("Inpaint: mask", parameters);
            Assert.Contains("Lora: style:0.5", parameters);
            // Images are not kept in the saved settings.
            Assert.DoesNotContain("base64", Js<string>("return localStorage.getItem('ella.settings')"));
            Assert.True(Js<bool>("return JSON.parse(localStorage.getItem('ella.history'))[0].request.init_image === undefined"));
            Directory.CreateDirectory(ArtifactDir);
            ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(ArtifactDir, "serve-page-tools.png"));
        }
        finally { Directory.Delete(dir, true); }
    }
}
