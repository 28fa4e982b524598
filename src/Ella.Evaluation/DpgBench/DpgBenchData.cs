using Sylvan.Data.Csv;

namespace Ella.Evaluation.DpgBench;

/// <summary>One row of the official dpg_bench.csv: one proposition (yes/no question) of one prompt.</summary>
public sealed record DpgRow(int RowNumber, string ItemId, string Text, int PropositionId, int[] Dependencies,
    string CategoryBroad, string CategoryDetailed, string Tuple, string Question)
{
    /// <summary>L2 category: the tuple text before "(", trimmed (what the official script uses).</summary>
    public string L2 => Tuple.Split('(')[0].Trim();
    /// <summary>L1 category: the L2 text before the first "-", trimmed.</summary>
    public string L1 => L2.Split('-')[0].Trim();
}

/// <summary>The question graph of one item: its propositions in CSV order and their parents (0 = none).</summary>
public sealed class DpgItem(string itemId)
{
    public string ItemId { get; } = itemId;
    public List<DpgRow> Propositions { get; } = new();
}

/// <summary>Reads and validates the official <c>dpg_bench.csv</c>.</summary>
public static class DpgBenchCsv
{
    public static readonly string[] Columns =
        ["item_id", "text", "keywords", "proposition_id", "dependency", "category_broad", "category_detailed", "tuple", "question_natural_language"];

    /// <summary>
    /// All rows, validated: required columns, integer proposition ids and dependencies, dependencies that name a
    /// proposition of the same item. Errors name the file and the row (1 = header, data from row 2).
    /// </summary>
    public static List<DpgRow> Load(string path)
    {
        if (!File.Exists(path)) throw new EllaException($"{path}: DPG-Bench CSV not found (get dpg_bench/dpg_bench.csv from the authors' ELLA repository)");
        if (new FileInfo(path).Length == 0) throw new EllaException($"{path}: the file is empty");
        var rows = new List<DpgRow>();
        try
        {
            ReadRows(path, rows);
        }
        catch (CsvFormatException e)
        {
            // A malformed quote or character (or a file that is not CSV at all) is an input error naming the file.
            throw new EllaException($"{path}: not a valid CSV file near row {rows.Count + 2}: {e.Message}");
        }
        if (rows.Count == 0) throw new EllaException($"{path}: no data rows");
        var propsByItem = rows.GroupBy(r => r.ItemId).ToDictionary(g => g.Key, g => g.Select(r => r.PropositionId).ToHashSet());
        foreach (var r in rows)
            foreach (int d in r.Dependencies)
                if (d != 0 && !propsByItem[r.ItemId].Contains(d))
                    throw new EllaException($"{path}: row {r.RowNumber}: item '{r.ItemId}' proposition {r.PropositionId} depends on proposition {d}, which the item does not have");
        return rows;
    }

    /// <summary>Reads and checks the rows into <paramref name="rows"/> (row numbers: 1 = header).</summary>
    static void ReadRows(string path, List<DpgRow> rows)
    {
        using (var reader = CsvDataReader.Create(path, new CsvDataReaderOptions { HasHeaders = true }))
        {
            var missing = Columns.Where(c => !Enumerable.Range(0, reader.FieldCount).Any(i => reader.GetName(i) == c)).ToList();
            if (missing.Count > 0) throw new EllaException($"{path}: missing column(s): {string.Join(", ", missing)} (expected {string.Join(", ", Columns)})");
            int col(string n) => reader.GetOrdinal(n);
            int row = 1;
            while (reader.Read())
            {
                row++;
                string itemId = reader.GetString(col("item_id")).Trim();
                string pid = reader.GetString(col("proposition_id")).Trim();
                if (!int.TryParse(pid, out int propositionId))
                    throw new EllaException($"{path}: row {row}: proposition_id '{pid}' is not an integer");
                var deps = new List<int>();
                foreach (var d in reader.GetString(col("dependency")).Split(','))
                {
                    if (!int.TryParse(d.Trim(), out int dep))
                        throw new EllaException($"{path}: row {row}: dependency '{reader.GetString(col("dependency"))}' is not a comma-separated list of integers");
                    deps.Add(dep);
                }
                rows.Add(new DpgRow(row, itemId, reader.GetString(col("text")), propositionId, deps.ToArray(),
                    reader.GetString(col("category_broad")), reader.GetString(col("category_detailed")),
                    reader.GetString(col("tuple")), reader.GetString(col("question_natural_language"))));
            }
        }
    }

    /// <summary>
    /// Groups rows into items. <paramref name="official"/> reproduces compute_dpg_bench.py: the first data row is dropped,
    /// and consecutive rows form an item (a later, non-adjacent run of the same id replaces the earlier one).
    /// Otherwise every row is kept and all rows of an id belong to it.
    /// </summary>
    public static Dictionary<string, DpgItem> Group(IReadOnlyList<DpgRow> rows, bool official)
    {
        var items = new Dictionary<string, DpgItem>(StringComparer.Ordinal);
        string? previous = null;
        for (int i = official ? 1 : 0; i < rows.Count; i++)
        {
            var r = rows[i];
            if (official)
            {
                if (r.ItemId != previous) items[r.ItemId] = new DpgItem(r.ItemId);
                // Same proposition id twice in one run: the later row replaces the earlier (dict assignment).
                var list = items[r.ItemId].Propositions;
                int existing = list.FindIndex(p => p.PropositionId == r.PropositionId);
                if (existing >= 0) list[existing] = r; else list.Add(r);
            }
            else
            {
                if (!items.TryGetValue(r.ItemId, out var item)) items[r.ItemId] = item = new DpgItem(r.ItemId);
                item.Propositions.Add(r);
            }
            previous = r.ItemId;
        }
        return items;
    }

    /// <summary>The prompts of an official <c>prompts/</c> folder: item id (file name without .txt) → text.</summary>
    public static SortedDictionary<string, string> LoadPrompts(string folder)
    {
        if (!Directory.Exists(folder)) throw new EllaException($"{folder}: prompts folder not found");
        var prompts = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var f in Directory.GetFiles(folder, "*.txt")) prompts[Path.GetFileNameWithoutExtension(f)] = File.ReadAllText(f);
        if (prompts.Count == 0) throw new EllaException($"{folder}: no .txt prompt files");
        return prompts;
    }
}
