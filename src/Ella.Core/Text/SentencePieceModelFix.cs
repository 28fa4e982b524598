namespace Ella.Text;

/// <summary>
/// Microsoft.ML.Tokenizers 2.0.1 cannot load a Unigram model whose trainer_spec has no BOS (bos_id = −1), which is
/// what T5's spiece.model declares: it indexes its piece table with −1. This rewrites that one field of the model
/// protobuf to the UNK id, which only adds an unused "&lt;s&gt;" → &lt;unk&gt; alias (BOS is never emitted: T5 does
/// not add it). Segmentation, normalization and every id are unchanged; the fixture tests prove it on all prompts.
/// </summary>
internal static class SentencePieceModelFix
{
    const int TrainerSpecField = 2;
    const int UnkIdField = 40;
    const int BosIdField = 41;

    /// <summary>Number of pieces (repeated field 1) in a SentencePiece model.</summary>
    public static int PieceCount(byte[] model) => ReadFields(model, 0, model.Length).Count(f => f.Number == 1 && f.WireType == 2);

    public static byte[] WithBosAsUnkIfAbsent(byte[] model)
    {
        var top = ReadFields(model, 0, model.Length);
        var trainer = top.FirstOrDefault(f => f.Number == TrainerSpecField && f.WireType == 2);
        if (trainer.Length == 0) return model;
        var inner = ReadFields(model, trainer.PayloadStart, trainer.PayloadStart + trainer.PayloadLength);
        long bos = inner.Where(f => f.Number == BosIdField && f.WireType == 0).Select(f => (long?)(int)f.Value).LastOrDefault() ?? 1; // proto default 1
        if (bos >= 0) return model;
        long unk = inner.Where(f => f.Number == UnkIdField && f.WireType == 0).Select(f => (long?)(int)f.Value).LastOrDefault() ?? 0;

        var spec = new MemoryStream();
        foreach (var f in inner.Where(f => f.Number != BosIdField)) spec.Write(model, f.Start, f.Length);
        WriteVarint(spec, (BosIdField << 3) | 0);
        WriteVarint(spec, (ulong)unk);

        var result = new MemoryStream();
        foreach (var f in top)
        {
            if (f.Start == trainer.Start)
            {
                WriteVarint(result, (TrainerSpecField << 3) | 2);
                WriteVarint(result, (ulong)spec.Length);
                spec.Position = 0;
                spec.CopyTo(result);
            }
            else result.Write(model, f.Start, f.Length);
        }
        return result.ToArray();
    }

    readonly record struct Field(int Number, int WireType, int Start, int Length, int PayloadStart, int PayloadLength, ulong Value);

    static List<Field> ReadFields(byte[] b, int start, int end)
    {
        var fields = new List<Field>();
        int p = start;
        while (p < end)
        {
            int fieldStart = p;
            ulong tag = ReadVarint(b, ref p, end);
            int wire = (int)(tag & 7), number = (int)(tag >> 3);
            int payloadStart = p, payloadLength = 0;
            ulong value = 0;
            switch (wire)
            {
                case 0: value = ReadVarint(b, ref p, end); break;
                case 1: p += 8; break;
                case 2:
                    payloadLength = checked((int)ReadVarint(b, ref p, end));
                    payloadStart = p;
                    p += payloadLength;
                    break;
                case 5: p += 4; break;
                default: throw new InvalidDataException($"unsupported protobuf wire type {wire}");
            }
            if (p > end) throw new InvalidDataException("truncated protobuf");
            fields.Add(new Field(number, wire, fieldStart, p - fieldStart, payloadStart, payloadLength, value));
        }
        return fields;
    }

    static ulong ReadVarint(byte[] b, ref int p, int end)
    {
        ulong v = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (p >= end) throw new InvalidDataException("truncated protobuf varint");
            byte x = b[p++];
            v |= (ulong)(x & 0x7f) << shift;
            if ((x & 0x80) == 0) return v;
        }
        throw new InvalidDataException("bad protobuf varint");
    }

    static void WriteVarint(Stream s, ulong v)
    {
        while (v >= 0x80) { s.WriteByte((byte)(v | 0x80)); v >>= 7; }
        s.WriteByte((byte)v);
    }

    static void WriteVarint(Stream s, int v) => WriteVarint(s, (ulong)v);
}
