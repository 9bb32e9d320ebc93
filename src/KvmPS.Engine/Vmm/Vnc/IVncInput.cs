using KvmPS.Devices.Display;

namespace KvmPS.Vmm.Vnc;

/// <summary>Where viewers' keys and pointer go (the i8042's PS/2 keyboard and mouse).</summary>
public interface IVncInput
{
    /// <summary>An X11 keysym pressed or released.</summary>
    void KeyEvent(uint keysym, bool down);

    /// <summary>The pointer at (<paramref name="x"/>, <paramref name="y"/>) with RFB button mask bits (1 left, 2 middle, 4 right, 8/16 wheel).</summary>
    void PointerEvent(int x, int y, byte buttons);
}

/// <summary>
/// What the server shows and feeds, looked up per use: the VMM builds a new machine (and display) at a guest reboot,
/// so viewers ask for the current one instead of keeping it.
/// </summary>
public interface IVncTarget
{
    IFramebuffer? Framebuffer { get; }
    IVncInput? Input { get; }
}
