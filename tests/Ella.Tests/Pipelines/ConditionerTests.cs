using Ella.Pipelines;
using static TorchSharp.torch;

namespace Ella.Tests.Pipelines;

public class ConditionerTests
{
    sealed class Counting : IConditioner
    {
        public int Calls;
        public long Rows => 1;
        public Tensor At(StepTime t) { Calls++; return full(1, 4, 2, (float)t.Value); }
        public void Dispose() { }
    }

    [Fact]
    public void The_negative_condition_is_computed_once_per_timestep_and_expanded_without_copies()
    {
        var source = new Counting();
        using var cached = new CachedConditioner(source);
        using var _ = inference_mode();
        for (int image = 0; image < 3; image++)
            foreach (double t in new[] { 999.0, 500.0, 1.0 })
            {
                using var rows = new ExpandedConditioner(cached, 4);
                using var c = rows.At(new StepTime(t, tensor((long)t)));
                Assert.Equal([4L, 4, 2], c.shape);
                Assert.Equal((float)t, c[3, 0, 0].item<float>());
            }
        Assert.Equal(3, source.Calls);
    }
}
