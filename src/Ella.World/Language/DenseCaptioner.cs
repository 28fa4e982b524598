using System.Text;
using Ella.World.Questions;
using Ella.World.Scenes;

namespace Ella.World.Language;

/// <summary>
/// Dense captions: every group with all its attributes, the stated relations and counts, and the background, in one
/// of three plans (a list then relations; objects introduced through a chain of relations; one sentence per object),
/// with the background inline, leading or in its own sentence, attribute order and referring expressions varied, and
/// synonyms drawn from the lexicon, so that no single template dominates.
/// </summary>
public static class DenseCaptioner
{
    static readonly string[] ListIntros = ["", "", "a picture of ", "an image of ", "a drawing of ", "a simple illustration of ", "this image shows ", "the picture shows ", "we see ", "there is "];
    static readonly string[] LeadPrepositions = ["on", "against", "set on", "placed on"];
    static readonly string[] Verbs = ["is", "sits", "lies", "appears", "is placed", "is positioned"];
    static readonly string[] FrontedVerbs = ["is", "sits", "lies"];
    static readonly string[] ObjectOpeners = ["there is {0}", "the scene contains {0}", "you can see {0}", "{0} is shown", "the picture has {0}"];
    static readonly string[] AlsoOpeners = ["there is also {0}", "the scene also contains {0}", "{0} is also present", "you can also see {0}", "the picture also has {0}"];

    public static string Caption(SceneFacts facts, Lexicon lex, WorldRandom rng)
    {
        var r = new Realizer(facts, lex, rng);
        return r.Run();
    }

    sealed class Realizer(SceneFacts facts, Lexicon lex, WorldRandom rng)
    {
        readonly List<string> _sentences = new();
        readonly HashSet<ObjectGroup> _introduced = new(ReferenceEqualityComparer.Instance);

        public string Run()
        {
            // Where the background goes: 0 inline after the first clause, 1 as a leading phrase, 2 a last sentence, 3 a first sentence.
            int bgPlace = rng.Pick(new[] { 0, 0, 1, 2, 2, 3 });
            int plan = facts.Relations.Count > 0 ? rng.Next(3) : rng.Pick(new[] { 0, 2 });
            if (bgPlace == 3) _sentences.Add(BackgroundSentence());
            string lead = bgPlace == 1 ? $"{rng.Pick(LeadPrepositions)} {BgNounPhrase()}, " : "";
            string inline = bgPlace == 0 ? " " + BackgroundPhrase() : "";
            switch (plan)
            {
                case 0: ListPlan(lead, inline); break;
                case 1: ChainPlan(lead, inline); break;
                default: EachPlan(lead, inline); break;
            }
            foreach (var c in facts.Counts) _sentences.Add(CountSentence(c));
            if (bgPlace == 2) _sentences.Add(BackgroundSentence());
            var text = new StringBuilder();
            foreach (var s in _sentences)
            {
                if (text.Length > 0) text.Append(' ');
                text.Append(char.ToUpperInvariant(s[0])).Append(s, 1, s.Length - 1).Append('.');
            }
            return text.ToString();
        }

        void ListPlan(string lead, string inline)
        {
            string intro = rng.Pick(ListIntros);
            if (intro == "there is " && facts.Groups[0].Count > 1) intro = "there are ";
            _sentences.Add(lead + intro + Join(facts.Groups.Select(Indefinite).ToList()) + inline);
            foreach (var g in facts.Groups) _introduced.Add(g);
            RelationSentences();
        }

        void ChainPlan(string lead, string inline)
        {
            bool first = true;
            var clauses = new List<string>();
            foreach (var rel in facts.Relations)
            {
                string clause = RelationClause(rel, definiteOnly: false);
                clauses.Add(first ? lead + clause + inline : clause);
                first = false;
            }
            for (int i = 0; i < clauses.Count; i++)
            {
                if (i + 1 < clauses.Count && rng.Chance(0.4)) { _sentences.Add(clauses[i] + ", and " + clauses[i + 1]); i++; }
                else _sentences.Add(clauses[i]);
            }
            foreach (var g in facts.Groups.Where(g => !_introduced.Contains(g)).ToList())
            {
                _sentences.Add(Opening(AlsoOpeners, g));
                _introduced.Add(g);
            }
        }

        void EachPlan(string lead, string inline)
        {
            for (int i = 0; i < facts.Groups.Count; i++)
            {
                var g = facts.Groups[i];
                string s = Opening(i == 0 ? ObjectOpeners : AlsoOpeners, g);
                _sentences.Add(i == 0 ? lead + s + inline : s);
                _introduced.Add(g);
            }
            RelationSentences();
        }

        /// <summary>An opener with the group's indefinite phrase, its verb agreeing in number ("there are two …").</summary>
        string Opening(string[] openers, ObjectGroup g)
        {
            string s = string.Format(rng.Pick(openers), Indefinite(g));
            return g.Count > 1 ? s.Replace("there is", "there are").Replace(" is shown", " are shown").Replace(" is also present", " are also present") : s;
        }

        void RelationSentences()
        {
            var clauses = facts.Relations.Select(r => RelationClause(r, definiteOnly: true)).ToList();
            for (int i = 0; i < clauses.Count; i++)
            {
                if (i + 1 < clauses.Count && rng.Chance(0.3)) { _sentences.Add(clauses[i] + ", and " + clauses[i + 1]); i++; }
                else if (i + 1 < clauses.Count && rng.Chance(0.15)) { _sentences.Add(clauses[i] + ", while " + clauses[i + 1]); i++; }
                else _sentences.Add(clauses[i]);
            }
        }

        /// <summary>A clause stating the relation with its subject first in meaning; new objects are introduced indefinitely.</summary>
        string RelationClause(StatedRelation r, bool definiteOnly)
        {
            string Mention(ObjectGroup g)
            {
                if (definiteOnly || _introduced.Contains(g)) return Definite(g);
                _introduced.Add(g);
                return Indefinite(g);
            }
            string phrase = rng.Pick(lex.Relations[r.Relation]);
            switch (rng.Next(5))
            {
                case 0:
                {
                    // Fronted: "to the left of the square is the red circle"
                    string reference = Mention(r.Reference), subject = Mention(r.Subject);
                    return $"{phrase} {reference} {rng.Pick(FrontedVerbs)} {subject}";
                }
                case 1:
                {
                    string subject = Mention(r.Subject), reference = Mention(r.Reference);
                    return $"{subject} can be seen {phrase} {reference}";
                }
                default:
                {
                    string subject = Mention(r.Subject), reference = Mention(r.Reference);
                    return $"{subject} {rng.Pick(Verbs)} {phrase} {reference}";
                }
            }
        }

        string CountSentence(StatedCount c)
        {
            string plural = c.Shape is { } s ? rng.Pick(lex.Shapes[s]).Plural : rng.Pick(lex.Generic);
            string n = Vocabulary.Number(c.Count);
            var generic = rng.Pick(lex.Generic);
            return c.Shape != null
                ? rng.Next(3) switch
                {
                    0 => $"there are {n} {plural} in total",
                    1 => $"{n} of the {generic} are {plural}",
                    _ => $"in total, the picture has {n} {plural}",
                }
                : rng.Next(3) switch
                {
                    0 => $"there are {n} {plural} in total",
                    1 => $"in all, {n} {plural} are shown",
                    _ => $"the picture holds {n} {plural}",
                };
        }

        /// <summary>"a large red circle", "two small squares in blue", "a red circle that is big", …</summary>
        string Indefinite(ObjectGroup g)
        {
            string size = rng.Pick(lex.Sizes[g.Kind.Size]), color = rng.Pick(lex.Colors[g.Kind.Color]);
            var noun = rng.Pick(lex.Shapes[g.Kind.Shape]);
            bool many = g.Count > 1;
            string n = many ? noun.Plural : noun.Singular;
            string Det(string next) => many ? Vocabulary.Number(g.Count) : Article(next);
            return rng.Next(8) switch
            {
                0 => $"{Det(color)} {color} {n} that {(many ? "are" : "is")} {size}",
                1 => $"{Det(size)} {size} {n} in {color}",
                2 => $"{Det(size)} {size}, {color} {n}",
                _ => $"{Det(size)} {size} {color} {n}",
            };
        }

        /// <summary>"the circle", "the red circle", "the big red disk": the group's descriptor, sometimes with more attributes.</summary>
        string Definite(ObjectGroup g)
        {
            bool withSize = g.Reference.Size != null || rng.Chance(0.3), withColor = g.Reference.Color != null || rng.Chance(0.35);
            var words = new List<string> { "the" };
            if (withSize) words.Add(rng.Pick(lex.Sizes[g.Kind.Size]));
            if (withColor) words.Add(rng.Pick(lex.Colors[g.Kind.Color]));
            words.Add(rng.Pick(lex.Shapes[g.Kind.Shape]).Singular);
            return string.Join(' ', words);
        }

        string BgColor() => rng.Pick(lex.BackgroundColors[facts.Scene.Background]);
        string BgNoun() => rng.Pick(lex.BackgroundNouns);

        /// <summary>"a gray background", "a plain beige backdrop", "an ivory canvas".</summary>
        string BgNounPhrase()
        {
            string color = BgColor(), noun = BgNoun();
            return rng.Chance(0.3) ? $"a plain {color} {noun}" : $"{Article(color)} {color} {noun}";
        }

        static string Article(string next) => "aeiou".Contains(next[0]) ? "an" : "a";

        string BackgroundPhrase() => rng.Next(3) switch
        {
            0 => $"on {BgNounPhrase()}",
            1 => $"against {BgNounPhrase()}",
            _ => $"set on {BgNounPhrase()}",
        };

        string BackgroundSentence()
        {
            string color = BgColor(), noun = BgNoun();
            return rng.Next(3) switch
            {
                0 => $"the {noun} is {color}",
                1 => $"the {noun} is plain {color}",
                _ => $"everything sits on {Article(color)} {color} {noun}",
            };
        }

        static string Join(IReadOnlyList<string> items) => items.Count switch
        {
            1 => items[0],
            2 => $"{items[0]} and {items[1]}",
            _ => string.Join(", ", items.Take(items.Count - 1)) + " and " + items[^1],
        };
    }
}
