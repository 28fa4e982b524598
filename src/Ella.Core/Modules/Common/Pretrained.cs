using Ella.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Ella.Modules.Common;

/// <summary>
/// The one loading sequence every model follows: check the dtype, build with uninitialised weights of that dtype,
/// load the checkpoint strictly, move to the device, eval mode, no gradients.
/// </summary>
public static class Pretrained
{
    public static T Load<T>(Func<T> build, ITensorSource source, ScalarType dtype, Device? device, string what,
        IEnumerable<string>? ignore = null) where T : nn.Module
    {
        DTypeGuard.Check(dtype, device, what);
        // Names and shapes first, on the meta device: a config that does not match the file (say block_out_channels
        // [1000000]) is refused from the safetensors header before a byte is allocated.
        using (Layers.EmptyWeights(dtype))
        using (Layers.MetaWeights())
        using (var shapes = build())
            StateDictLoader.CheckFits(shapes, source, ignore);
        T model;
        using (Layers.EmptyWeights(dtype)) model = build();
        try
        {
            StateDictLoader.Load(model, source, ignore);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        if (device != null && device.type != DeviceType.CPU) model.to(device);
        model.eval();
        foreach (var p in model.parameters()) p.requires_grad = false;
        return model;
    }
}
