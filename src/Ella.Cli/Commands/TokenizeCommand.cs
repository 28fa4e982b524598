using System.CommandLine;
using System.Text.Json;
using Ella.Text;

namespace Ella.Cli.Commands;

/// <summary><c>ella tokenize --t5 DIR | --clip DIR "text"</c>: the tokens and ids a prompt becomes.</summary>
public static class TokenizeCommand
{
    public static Command Create(CliContext ctx)
    {
        var text = new Argument<string>("text") { Description = "The prompt (use quotes)" };
        var t5 = new Option<string?>("--t5") { Description = "A T5 folder (spiece.model), e.g. google/flan-t5-xl" };
        var clip = new Option<string?>("--clip") { Description = "A CLIP tokenizer folder (vocab.json + merges.txt) or bpe_simple_vocab_16e6.txt.gz" };
        var mode = new Option<string>("--token-length") { Description = "T5: flexible (no padding) or fixed (pad/truncate to --max-length)", DefaultValueFactory = _ => "flexible" };
        mode.AcceptOnlyFromAmong("flexible", "fixed");
        var maxLength = new Option<int?>("--max-length") { Description = "Fixed length: 128 for T5, 77 for CLIP" };
        var json = new Option<bool>("--json") { Description = "Print {\"tokenizer\", \"tokens\", \"ids\", \"attention_mask\", \"truncated\"}" };
        var command = new Command("tokenize", "Show the tokens and ids of a prompt (to debug prompts)") { text, t5, clip, mode, maxLength, json };
        command.SetAction(p => Run(ctx, p.GetValue(text)!, p.GetValue(t5), p.GetValue(clip), p.GetValue(mode)!, p.GetValue(maxLength), p.GetValue(json)));
        return command;
    }

    static int Run(CliContext ctx, string text, string? t5Path, string? clipPath, string mode, int? maxLength, bool asJson)
    {
        if ((t5Path == null) == (clipPath == null)) throw new EllaException("tokenize: give exactly one of --t5 DIR or --clip DIR");
        string name;
        IReadOnlyList<(string Token, int Id)> tokens;
        TokenizedText encoded;
        if (t5Path != null)
        {
            var tok = T5Tokenizer.FromPretrained(t5Path);
            name = "t5";
            tokens = tok.Tokens(text).Append(("</s>", T5Tokenizer.EosId)).ToList();
            encoded = tok.Encode(text, mode == "fixed" ? TokenLength.Fixed : TokenLength.Flexible, maxLength ?? T5Tokenizer.DefaultMaxLength);
        }
        else
        {
            var tok = ClipTokenizer.FromPretrained(clipPath!);
            name = "clip";
            tokens = tok.Tokens(text).Prepend((ClipTokenizer.StartToken, tok.BosId)).Append((ClipTokenizer.EndToken, tok.EosId)).ToList();
            encoded = tok.Encode(text, maxLength);
        }
        if (asJson)
        {
            ctx.Out.WriteLine(JsonSerializer.Serialize(new
            {
                tokenizer = name,
                tokens = tokens.Select(t => t.Token),
                ids = encoded.Ids,
                attention_mask = encoded.AttentionMask,
                untruncated_length = encoded.UntruncatedLength,
                truncated = encoded.Truncated,
            }));
            return EllaCli.ExitOk;
        }
        ctx.Out.WriteLine($"{name}: {encoded.UntruncatedLength} tokens (with special tokens){(encoded.Truncated ? $", truncated to {encoded.Length}" : "")}");
        foreach (var (token, id) in tokens) ctx.Out.WriteLine($"{id,8}  {token}");
        ctx.Out.WriteLine($"ids: [{string.Join(", ", encoded.Ids)}]");
        if (encoded.Ids.Length != encoded.UntruncatedLength || encoded.AttentionMask.Contains(0))
            ctx.Out.WriteLine($"attention_mask: [{string.Join(", ", encoded.AttentionMask)}]");
        return EllaCli.ExitOk;
    }
}
