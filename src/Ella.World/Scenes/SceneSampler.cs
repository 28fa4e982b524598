namespace Ella.World.Scenes;

/// <summary>
/// Draws scenes from a <see cref="WorldRandom"/>: background uniform; 1–4 objects; each object's shape, colour (never the
/// background's) and size uniform, except that with probability <see cref="RepeatKindProbability"/> an object repeats an
/// earlier one's kind (so "two red circles" happen often enough to learn counting). Positions are uniform among those
/// that keep every box inside the canvas margin and at least <see cref="MinGap"/> pixels from every other box.
/// </summary>
public static class SceneSampler
{
    public const int Margin = 2;
    public const int MinGap = 3;
    public const double RepeatKindProbability = 0.2;

    public static Scene Sample(WorldRandom rng)
    {
        while (true)
        {
            var background = rng.Pick(Vocabulary.Backgrounds);
            var colors = Vocabulary.Colors.Where(c => c != Vocabulary.SameAs(background)).ToArray();
            int count = rng.Between(1, 4);
            var objects = new List<SceneObject>();
            bool placed = true;
            for (int i = 0; i < count && placed; i++)
            {
                ObjectKind kind = i > 0 && rng.Chance(RepeatKindProbability)
                    ? objects[rng.Next(objects.Count)].Kind
                    : new ObjectKind(rng.Pick(Vocabulary.Shapes), rng.Pick(colors), rng.Pick(Vocabulary.Sizes));
                int side = kind.Size == ObjectSize.Small
                    ? rng.Between(Vocabulary.SmallMin, Vocabulary.SmallMax)
                    : rng.Between(Vocabulary.LargeMin, Vocabulary.LargeMax);
                placed = false;
                for (int attempt = 0; attempt < 200 && !placed; attempt++)
                {
                    int max = Vocabulary.CanvasSize - Margin - side;
                    var o = new SceneObject(kind.Shape, kind.Color, kind.Size, rng.Between(Margin, max), rng.Between(Margin, max), side);
                    if (objects.All(p => p.Gap(o) >= MinGap)) { objects.Add(o); placed = true; }
                }
            }
            if (placed) return new Scene(background, objects);
            // No room left for the last object: draw the whole scene again (the generator moves on, so this ends).
        }
    }
}
