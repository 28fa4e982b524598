using System.Runtime.CompilerServices;
using Ella.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Tests.Native;

/// <summary>
/// TorchSharp Scalars freed by .NET stay valid for the grace period (libEllaScalarGrace.so). Without it the finalizer
/// thread could free a number libtorch was about to read: the server load test once failed with libtorch's
/// "Expected false to be true ... toFloat" from <c>Tensor.add(Scalar)</c>'s implicit alpha.
/// </summary>
public class ScalarGraceTests
{
    [Fact]
    public void TorchSharp_frees_its_scalars_through_the_grace_queue()
    {
        if (!OperatingSystem.IsLinux()) return;
        TorchRuntime.Initialize();
        Assert.True(ScalarGrace.Active, ScalarGrace.Status);
        var before = ScalarGrace.Read()!.Value;
        DropScalars(100);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var after = ScalarGrace.Read()!.Value;
        // The hundred unreachable Scalars went through the finalizer into the queue (other threads may add more).
        Assert.True(after.Deferred >= before.Deferred + 100, $"queued {after.Deferred - before.Deferred} of 100 finalized Scalars");
        Assert.Equal(TimeSpan.FromSeconds(2), after.Grace);
        // Once the grace period has passed they are really freed.
        Thread.Sleep(after.Grace + TimeSpan.FromMilliseconds(200));
        ScalarGrace.Collect();
        Assert.True(ScalarGrace.Read()!.Value.Freed >= after.Deferred, "Scalars older than the grace period are still held");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static void DropScalars(int count)
    {
        for (int i = 0; i < count; i++) _ = (i + 0.5).ToScalar();
    }

    /// <summary>
    /// The race itself: one thread adds numbers to a tensor (TorchSharp makes two Scalars per call, the number and the
    /// implicit alpha of 1) while another forces a garbage collection every few microseconds. Without the grace library
    /// this failed in 3 of 4 four-second runs here (1–3 errors in 20,000–55,000 calls), hence six seconds; the test above
    /// fails every time without it. Now every result must be right.
    /// </summary>
    [Fact]
    public void Collections_during_native_calls_do_not_free_the_numbers_being_read()
    {
        if (!OperatingSystem.IsLinux()) return;
        TorchRuntime.Initialize();
        using var x = ones(4);
        bool stop = false;
        long gcs = 0;
        var collector = new Thread(() =>
        {
            while (!Volatile.Read(ref stop)) { _ = new byte[10_000]; GC.Collect(0); gcs++; Thread.SpinWait(1000); }
        }) { IsBackground = true };
        collector.Start();
        int calls = 0, wrong = 0, failed = 0;
        var errors = new List<string>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            while (clock.Elapsed < TimeSpan.FromSeconds(6))
            {
                using var scope = NewDisposeScope();
                try
                {
                    if (x.add((calls % 7 + 0.5).ToScalar())[0].item<float>() != 1 + calls % 7 + 0.5f) wrong++;
                }
                catch (Exception e)
                {
                    if (failed++ < 3) errors.Add(e.Message.Split('\n')[0]);
                }
                calls++;
            }
        }
        finally
        {
            Volatile.Write(ref stop, true);
            collector.Join();
        }
        Assert.True(wrong == 0 && failed == 0, $"{calls} calls, {gcs} collections: {wrong} wrong sums, {failed} errors: {string.Join(" | ", errors)}");
    }
}
