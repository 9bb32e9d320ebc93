using System.Buffers.Binary;
using System.Runtime.InteropServices;
using KvmPS.Devices.Display;

namespace KvmPS.Vmm.Vnc;

/// <summary>
/// Building updates. The dirty log says which rows were written, but at 1024 pixels of 32 bits a 4 KiB page is a whole
/// row: a small moving picture dirties full-width bands. So each viewer keeps a shadow copy of what it was last sent
/// (0x00RRGGBB, the mode's size: 3 MiB at 1024x768) and sends only the 16-pixel column blocks of written rows that
/// differ from it, merged per run of changed rows (like QEMU's VNC, which compares with its own copy in 16-pixel blocks).
/// </summary>
internal sealed partial class VncViewer
{
    private const int MaxRectRows = ZrleEncoder.TileSize; // rectangles are cut into bands of this many rows
    private const int BlockPixels = 16;                   // the width in which rows are compared with the shadow

    private readonly List<Rect> _rects = [];
    private uint[] _pixels = [];
    private byte[] _row = [];
    private bool[] _changed = [];
    private uint[] _line = [];
    private bool[] _runBlocks = [];
    /// <summary>The pixels this viewer was last sent, row after row at <see cref="_shadowMode"/>'s width; only valid for that mode.</summary>
    private uint[] _shadow = [];
    private FramebufferMode _shadowMode;

    /// <param name="FromShadow">The pixels are already in the shadow (narrowed); otherwise they are read and copied into it.</param>
    private readonly record struct Rect(int X, int Y, int W, int H, bool FromShadow);

    /// <summary>
    /// Sends what the pending request covers and changed since this viewer's last update; true when an update went out.
    /// Nothing changed: the request stays pending, false.
    /// </summary>
    private bool TrySendUpdate()
    {
        var request = _pending!.Value;
        var fb = _server.Target.Framebuffer;
        long generation = fb?.Refresh() ?? 0;
        var (width, height, mode) = CurrentSize();
        bool blank = fb is null || mode.IsBlank;
        // A new size the viewer can take (DesktopSize) is announced and then filled; a viewer without it keeps its
        // size and sees the top-left of a larger mode.
        bool sizeMessage = _desktopSize && (width != _width || height != _height);
        // A new mode (a reboot included: blank first) has nothing in common with the shadow: everything is sent.
        bool full = !request.Incremental || mode != _mode || sizeMessage || (!blank && mode != _shadowMode);
        var rects = _rects;
        rects.Clear();
        if (sizeMessage)
        {
            (_width, _height) = (width, height);
            request = (false, 0, 0, width, height);
        }
        int x0 = Math.Min(request.X, _width), y0 = Math.Min(request.Y, _height);
        int x1 = Math.Min(request.X + request.W, _width), y1 = Math.Min(request.Y + request.H, _height);
        if (x1 > x0 && y1 > y0)
        {
            if (full)
            {
                for (int y = y0; y < y1; y += MaxRectRows) rects.Add(new Rect(x0, y, x1 - x0, Math.Min(MaxRectRows, y1 - y), false));
                if (!blank) ResetShadow(mode);
            }
            else if (!blank)
                NarrowChanges(fb!, mode, x0, y0, Math.Min(x1, mode.Width), Math.Min(y1, mode.Height), rects);
            // blank and incremental: nothing new to show
        }
        _seen = generation;
        _mode = mode;
        if (rects.Count == 0 && !sizeMessage) return false; // keep the request: the next change answers it
        _pending = null;
        int count = rects.Count + (sizeMessage ? 1 : 0);
        if (count > ushort.MaxValue) throw new RfbProtocolException("update too large"); // cannot happen: at most 65535/1 rows
        Span<byte> header = stackalloc byte[4];
        header[0] = 0; header[1] = 0;
        BinaryPrimitives.WriteUInt16BigEndian(header[2..], (ushort)count);
        _out.Write(header);
        if (sizeMessage) WriteRectHeader(0, 0, _width, _height, EncodingDesktopSize);
        foreach (var r in rects) WriteRect(fb, mode, blank, r);
        _out.Flush();
        return true;
    }

    private void ResetShadow(FramebufferMode mode)
    {
        int n = checked(mode.Width * mode.Height);
        if (_shadow.Length != n) _shadow = new uint[n];
        else Array.Clear(_shadow); // what a partial full request leaves out is unknown; black until sent
        _shadowMode = mode;
    }

    /// <summary>
    /// The rows written since <see cref="_seen"/> within x0..x1, y0..y1 (inside the mode), compared with the shadow:
    /// unchanged rows send nothing; changed ones become rectangles of the changed 16-pixel blocks, one per run of
    /// blocks over each run of consecutive changed rows (at most <see cref="MaxRectRows"/>). The shadow takes the new pixels.
    /// </summary>
    private void NarrowChanges(IFramebuffer fb, FramebufferMode mode, int x0, int y0, int x1, int y1, List<Rect> rects)
    {
        if (x1 <= x0 || y1 <= y0) return;
        if (_changed.Length != mode.Height) _changed = new bool[mode.Height];
        Array.Clear(_changed);
        fb.ChangedRows(_seen, mode, _changed);
        int w = x1 - x0, blocks = (w + BlockPixels - 1) / BlockPixels;
        if (_line.Length < w) _line = new uint[w];
        if (_runBlocks.Length < blocks) _runBlocks = new bool[blocks];
        var line = _line.AsSpan(0, w);
        var runBlocks = _runBlocks.AsSpan(0, blocks);
        int runStart = -1;
        for (int y = y0; y < y1; y++)
        {
            bool rowChanged = false;
            if (_changed[y])
            {
                fb.CopyPixels(mode, x0, y, w, 1, line);
                var seen = _shadow.AsSpan(y * mode.Width + x0, w);
                if (!line.SequenceEqual(seen)) // vectorised; a written but unchanged row ends here
                {
                    rowChanged = true;
                    if (runStart < 0) { runStart = y; runBlocks.Clear(); }
                    for (int b = 0; b < blocks; b++)
                    {
                        if (runBlocks[b]) continue;
                        int at = b * BlockPixels, n = Math.Min(BlockPixels, w - at);
                        if (!line.Slice(at, n).SequenceEqual(seen.Slice(at, n))) runBlocks[b] = true;
                    }
                    line.CopyTo(seen);
                }
            }
            if (runStart >= 0 && (!rowChanged || y + 1 - runStart == MaxRectRows))
            {
                AddBlockRuns(rects, x0, w, runStart, (rowChanged ? y + 1 : y) - runStart, runBlocks);
                runStart = -1;
            }
        }
        if (runStart >= 0) AddBlockRuns(rects, x0, w, runStart, y1 - runStart, runBlocks);
    }

    private static void AddBlockRuns(List<Rect> rects, int x0, int w, int y, int h, ReadOnlySpan<bool> blocks)
    {
        for (int b = 0; b < blocks.Length;)
        {
            if (!blocks[b]) { b++; continue; }
            int end = b;
            while (end < blocks.Length && blocks[end]) end++;
            int left = b * BlockPixels, right = Math.Min(end * BlockPixels, w);
            rects.Add(new Rect(x0 + left, y, right - left, h, true));
            b = end;
        }
    }

    private void WriteRect(IFramebuffer? fb, FramebufferMode mode, bool blank, Rect r)
    {
        int n = r.W * r.H;
        if (_pixels.Length < n) _pixels = new uint[Math.Max(n, _pixels.Length * 2)];
        var pixels = _pixels.AsSpan(0, n);
        if (r.FromShadow)
            for (int row = 0; row < r.H; row++)
                _shadow.AsSpan((r.Y + row) * mode.Width + r.X, r.W).CopyTo(pixels.Slice(row * r.W, r.W));
        else if (blank) pixels.Clear();
        else
        {
            fb!.CopyPixels(mode, r.X, r.Y, r.W, r.H, pixels);
            // The shadow keeps what this viewer now has, within the mode (a viewer larger than the mode sees black beyond).
            int cw = Math.Min(r.X + r.W, mode.Width) - r.X;
            if (cw > 0 && _shadowMode == mode)
                for (int row = 0; row < r.H && r.Y + row < mode.Height; row++)
                    pixels.Slice(row * r.W, cw).CopyTo(_shadow.AsSpan((r.Y + row) * mode.Width + r.X, cw));
        }
        WriteRectHeader(r.X, r.Y, r.W, r.H, _encoding);
        if (_encoding == EncodingZrle)
        {
            _zrle ??= new ZrleEncoder();
            _zrle.Encode(pixels, r.W, r.H, _format, _out);
            return;
        }
        if (_format.IsHostRgb888)
        {
            _out.Write(MemoryMarshal.AsBytes(pixels)); // the viewer's format is our 0x00RRGGBB in host byte order: as is
            return;
        }
        int bpp = _format.BytesPerPixel;
        if (_row.Length < r.W * bpp) _row = new byte[r.W * bpp];
        for (int row = 0; row < r.H; row++)
        {
            for (int i = 0; i < r.W; i++) _format.WritePixel(_row.AsSpan(i * bpp), _format.Encode(pixels[row * r.W + i]));
            _out.Write(_row, 0, r.W * bpp);
        }
    }
}
