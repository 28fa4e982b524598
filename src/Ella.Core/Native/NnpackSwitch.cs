using System.Runtime.InteropServices;

namespace Ella.Native;

/// <summary>
/// Turns libtorch's NNPACK off, as PyTorch's <c>torch.backends.nnpack.set_flags(False)</c> does. For a small float32
/// convolution on one image (below 20,480 input elements with a 3×3 or 1×1 kernel, like a VAE decoder's first
/// convolutions) libtorch does not pick oneDNN and asks NNPACK first; on CPUs NNPACK does not support (the AMD EPYC
/// machines here) each such call prints "Could not initialize NNPACK! Reason: Unsupported hardware." to stderr, twice
/// per VAE decode, and then computes the convolution directly anyway. Off, those convolutions go straight to that
/// direct path and nothing is printed; where NNPACK works it would have used Winograd or FFT algorithms, which round
/// differently, so the direct path is also the one closer to the references. Calls
/// <c>at::globalContext().setUserEnabledNNPACK(false)</c> through libtorch_cpu's exports; a no-op where they are missing.
/// </summary>
public static class NnpackSwitch
{
    const string GlobalContext = "_ZN2at13globalContextEv";
    const string SetUserEnabled = "_ZN2at7Context20setUserEnabledNNPACKEb";
    const string UserEnabled = "_ZNK2at7Context17userEnabledNNPACKEv";

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate IntPtr ContextGetter();
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    delegate void FlagSetter(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool value);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    [return: MarshalAs(UnmanagedType.U1)]
    delegate bool FlagGetter(IntPtr context);

    /// <summary>Whether libtorch may use NNPACK now (null when the switch cannot be read).</summary>
    public static bool? Enabled
    {
        get
        {
            IntPtr context = Context(), fn = LibTorchCpu.Export(UserEnabled);
            return context == IntPtr.Zero || fn == IntPtr.Zero ? null : Marshal.GetDelegateForFunctionPointer<FlagGetter>(fn)(context);
        }
    }

    /// <summary>Turns NNPACK off; returns whether the switch was found.</summary>
    public static bool Disable()
    {
        IntPtr context = Context(), fn = LibTorchCpu.Export(SetUserEnabled);
        if (context == IntPtr.Zero || fn == IntPtr.Zero) return false;
        Marshal.GetDelegateForFunctionPointer<FlagSetter>(fn)(context, false);
        return true;
    }

    static IntPtr Context()
    {
        IntPtr fn = LibTorchCpu.Export(GlobalContext);
        return fn == IntPtr.Zero ? IntPtr.Zero : Marshal.GetDelegateForFunctionPointer<ContextGetter>(fn)();
    }
}
