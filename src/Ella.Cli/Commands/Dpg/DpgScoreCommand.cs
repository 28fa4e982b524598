using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Ella.Evaluation.DpgBench;
using Ella.Evaluation.Judges;
using Ella.Imaging;

namespace Ella.Cli.Commands.Dpg;

/// <summary><c>ella dpg score</c>: the authors' compute_dpg_bench.py numbers (or the corrected ones) with a pluggable judge.</summary>
public static class DpgScoreCommand
{
    public static Command Create(CliContext ctx)
    {
        var images = new Option<string>("--images") { Description = "Folder of <item_id>.png|jpg 2×2 grids", Required = true };
        var csv = new Option<string>("--csv") { Description = "The official dpg_bench.csv", Required = true };
        var resolution = new Option<int>("--resolution") { Description = "Pixels of one grid cell (e.g. 512)", Required = true };
        var picNum = new Option<int>("--pic-num") { Description = "Crops per image to ask about (1–4: top-left, top-right, bottom-left, bottom-right)", DefaultValueFactory = _ => 4 };
        var scoring = new Option<string>("--scoring") { Description = "official (reproduces the authors' script, defects included) | corrected", DefaultValueFactory = _ => "official" };
        scoring.AcceptOnlyFromAmong("official", "corrected");
        var judge = new Option<string>("--judge") { Description = "replay | openai | shapes (the shapes world's scene parser)", DefaultValueFactory = _ => "replay" };
        judge.AcceptOnlyFromAmong("replay", "openai", "shapes");
        var answers = new Option<string?>("--answers") { Description = "Answers JSONL: read by replay; written (and resumed) by openai (default: <out>/dpg_answers.jsonl)" };
        var endpoint = new Option<string?>("--endpoint") { Description = "openai: base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1" };
        var model = new Option<string?>("--model") { Description = "openai: model name" };
        var apiKeyEnv = new Option<string>("--api-key-env") { Description = "openai: environment variable holding the API key", DefaultValueFactory = _ => "OPENAI_API_KEY" };
        var parallel = new Option<int>("--parallel") { Description = "openai: requests in flight", DefaultValueFactory = _ => 4 };
        var retries = new Option<int>("--retries") { Description = "openai: retries per question (exponential backoff)", DefaultValueFactory = _ => 5 };
        var output = new Option<string?>("--out") { Description = "Folder for dpg_results.csv and dpg_detail.txt (default: the images folder)" };
        var json = new Option<bool>("--json") { Description = "Print {\"score\", \"l1\", \"l2\", \"items\", \"scored\", \"skipped\"} (scores ×100)" };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Largest image read, in pixels (checked from the header before decoding)", DefaultValueFactory = _ => RgbImage.DefaultMaxPixels };
        var command = new Command("score", "Score generated DPG-Bench images with a VQA judge")
            { images, csv, resolution, picNum, scoring, judge, answers, endpoint, model, apiKeyEnv, parallel, retries, output, json, maxPixels };
        command.SetAction(async (p, ct) =>
        {
            if (p.GetValue(maxPixels) < 1) throw new EllaException($"--max-pixels must be at least 1, got {p.GetValue(maxPixels)}");
            using var limit = RgbImage.LimitPixels(p.GetValue(maxPixels));
            string outDir = p.GetValue(output) ?? p.GetValue(images)!;
            var rows = DpgBenchCsv.Load(p.GetValue(csv)!);
            Directory.CreateDirectory(outDir);
            await using IVqaJudge vqa = p.GetValue(judge) switch
            {
                "replay" => new ReplayJudge(p.GetValue(answers) ?? throw new EllaException("--judge replay needs --answers FILE")),
                "shapes" => new ShapesJudge(rows, p.GetValue(csv)!),
                _ => new OpenAiJudge(new OpenAiJudgeOptions
                {
                    Endpoint = p.GetValue(endpoint) ?? throw new EllaException("--judge openai needs --endpoint URL"),
                    Model = p.GetValue(model) ?? throw new EllaException("--judge openai needs --model NAME"),
                    ApiKey = Environment.GetEnvironmentVariable(p.GetValue(apiKeyEnv)!) ?? "none",
                    Parallel = p.GetValue(parallel),
                    Retries = p.GetValue(retries),
                    AnswersPath = p.GetValue(answers) ?? Path.Combine(outDir, "dpg_answers.jsonl"),
                    Log = m => ctx.Error.WriteLine(m),
                }),
            };
            var options = new DpgScoreOptions
            {
                ImagesDir = p.GetValue(images)!, Resolution = p.GetValue(resolution), PicNum = p.GetValue(picNum),
                Scoring = p.GetValue(scoring) == "corrected" ? DpgScoring.Corrected : DpgScoring.Official,
            };
            var result = await DpgScorer.ScoreAsync(rows, options, vqa, new QuestionProgress(ctx.Error), ct);
            DpgResultFiles.Write(outDir, result, "; pass --out DIR");
            if (p.GetValue(json)) ctx.Out.WriteLine(Json(result));
            else Print(ctx.Out, result, options, vqa.Name, outDir);
            return EllaCli.ExitOk;
        });
        return command;
    }

    sealed class QuestionProgress(TextWriter writer) : IProgress<int>
    {
        public void Report(int answered) { if (answered % 500 == 0) writer.WriteLine($"answered {answered} questions"); }
    }

    static double Pct(double v) => v * 100;

    public static string Json(DpgResult r) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["score"] = Pct(r.Score),
        ["l1"] = r.L1.ToDictionary(kv => kv.Key, kv => Pct(kv.Value)),
        ["l2"] = r.L2.ToDictionary(kv => kv.Key, kv => Pct(kv.Value)),
        ["items"] = r.Items.ToDictionary(kv => kv.Key, kv => Pct(kv.Value)),
        ["scored"] = r.Items.Count,
        ["skipped"] = r.Skipped,
    }, new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });

    static void Print(TextWriter o, DpgResult r, DpgScoreOptions opt, string judge, string outDir)
    {
        var inv = CultureInfo.InvariantCulture;
        o.WriteLine(string.Create(inv, $"DPG-Bench score: {Pct(r.Score):F2}   ({r.Items.Count} items scored, {r.Skipped.Count} skipped; {opt.Scoring.ToString().ToLowerInvariant()} scoring, {opt.PicNum} crop(s) per image, judge: {judge})"));
        o.WriteLine("L1 category scores:");
        foreach (var (k, v) in r.L1) o.WriteLine(string.Create(inv, $"  {k,-28} {Pct(v),7:F2}"));
        o.WriteLine("L2 category scores:");
        foreach (var (k, v) in r.L2) o.WriteLine(string.Create(inv, $"  {k,-28} {Pct(v),7:F2}"));
        if (r.Skipped.Count > 0)
        {
            o.WriteLine("Skipped:");
            foreach (var (k, v) in r.Skipped) o.WriteLine($"  {k}: {v}");
        }
        o.WriteLine($"Per-item scores: {Path.Combine(outDir, DpgResultFiles.ResultsFile)}; questions and answers: {Path.Combine(outDir, DpgResultFiles.DetailFile)}");
    }
}
