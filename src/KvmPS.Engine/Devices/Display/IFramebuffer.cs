namespace KvmPS.Devices.Display;

/// <summary>
/// The mode a display shows. <see cref="Width"/> and <see cref="Height"/> are 0 while nothing is shown; a guest that
/// reprograms the mode (Bochs DISPI registers) produces a new value, so consumers compare it on every poll.
/// </summary>
public readonly record struct FramebufferMode(int Width, int Height, int BitsPerPixel, int StrideBytes, long OffsetBytes)
{
    public bool IsBlank => Width == 0 || Height == 0;
}

/// <summary>
/// What a display device offers the VNC server and screenshots: the current mode, which rows changed, and the pixels.
/// Several viewers read one framebuffer at their own pace: each keeps the generation it last saw and asks what
/// changed since then, so one viewer's update never hides a change from another.
/// </summary>
public interface IFramebuffer
{
    FramebufferMode Mode { get; }

    /// <summary>Collects the guest's writes since the last call (KVM dirty log of the framebuffer); returns the new generation.</summary>
    long Refresh();

    /// <summary>
    /// Marks in <paramref name="rows"/> (length = <see cref="FramebufferMode.Height"/> of <paramref name="mode"/>)
    /// the rows written after generation <paramref name="since"/>; a mode change or <paramref name="since"/> 0 marks
    /// every row.
    /// </summary>
    void ChangedRows(long since, FramebufferMode mode, Span<bool> rows);

    /// <summary>
    /// Copies a rectangle of the current mode into <paramref name="destination"/> as 0x00RRGGBB pixels, row after row
    /// (<paramref name="width"/> × <paramref name="height"/>), converting from the guest's pixel format. A rectangle
    /// outside the mode is clipped; pixels outside read as black.
    /// </summary>
    void CopyPixels(FramebufferMode mode, int x, int y, int width, int height, Span<uint> destination);
}
