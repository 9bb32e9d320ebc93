using KvmPS.Interop;

namespace KvmPS.Vmm;

/// <summary>
/// An append-only log file with a size limit, rotated as libvirt's virtlogd rotates a guest's console log: when a write
/// would take <c>PATH</c> past <see cref="MaxBytes"/>, <c>PATH.(n-1)</c> becomes <c>PATH.n</c> … <c>PATH</c> becomes
/// <c>PATH.1</c>, the oldest beyond <see cref="KeptFiles"/> is deleted, and a new <c>PATH</c> is started. A guest that
/// prints without end so fills at most (<see cref="KeptFiles"/> + 1) × <see cref="MaxBytes"/> of the host's disk.
/// <see cref="MaxBytes"/> 0 means no limit (one file, appended, as before). Not thread-safe: one writer (the console thread).
/// </summary>
public sealed class RotatingLogFile : IDisposable
{
    /// <summary>Default size of one file: 4 MiB (hours of a chatty Linux boot; virtlogd's default is 2 MiB).</summary>
    public const long DefaultMaxBytes = 4L << 20;
    /// <summary>Default number of rotated files kept beside the current one (virtlogd's max_backups is 3).</summary>
    public const int DefaultKeptFiles = 3;
    /// <summary>Smallest limit accepted, so a typo cannot rotate on every line.</summary>
    public const long MinimumMaxBytes = 4096;
    /// <summary>Most rotated files kept.</summary>
    public const int MaximumKeptFiles = 100;

    private FileStream _file;
    private long _length;

    public string Path { get; }
    public long MaxBytes { get; }
    public int KeptFiles { get; }
    /// <summary>Rotations done by this writer.</summary>
    public int Rotations { get; private set; }

    /// <summary>Opens (appends to) <paramref name="path"/>; throws IOException (<see cref="SymlinkRefusedException"/> for a link) or UnauthorizedAccessException.</summary>
    public RotatingLogFile(string path, long maxBytes = DefaultMaxBytes, int keptFiles = DefaultKeptFiles)
    {
        if (maxBytes != 0 && maxBytes < MinimumMaxBytes) throw new ArgumentOutOfRangeException(nameof(maxBytes), maxBytes, $"a log size limit is 0 (none) or at least {MinimumMaxBytes} bytes");
        if (keptFiles is < 0 or > MaximumKeptFiles) throw new ArgumentOutOfRangeException(nameof(keptFiles), keptFiles, $"kept log files are 0 to {MaximumKeptFiles}");
        Path = path;
        MaxBytes = maxBytes;
        KeptFiles = keptFiles;
        _file = Open();
        _length = _file.Length;
    }

    /// <summary>
    /// Appends without following a symlink planted as the log or its folder (SymlinkRefusedException), created 0600:
    /// the guest's console is no other user's to read.
    /// </summary>
    private FileStream Open() => NoFollowFile.AppendStream(Path, NoFollowFile.OwnerOnly, bufferSize: 1);

    /// <summary>File <paramref name="index"/> of the set: 0 is <see cref="Path"/>, 1 the newest rotated one.</summary>
    public string FileName(int index) => index == 0 ? Path : $"{Path}.{index}";

    public void Write(ReadOnlySpan<byte> data)
    {
        // Append where the file ends now, not where this writer last wrote: during a live upgrade the VMM that hands the
        // VM over and the one that receives it have the same console file open, one after the other (FileMode.Append
        // does not open with O_APPEND, so a stale position would overwrite the other's last lines).
        _length = _file.Seek(0, SeekOrigin.End);
        while (!data.IsEmpty)
        {
            if (MaxBytes == 0) { _file.Write(data); _length += data.Length; return; }
            if (_length >= MaxBytes) Rotate();
            int n = (int)Math.Min(data.Length, MaxBytes - _length);
            _file.Write(data[..n]);
            _length += n;
            data = data[n..];
        }
    }

    private void Rotate()
    {
        _file.Dispose();
        try
        {
            if (KeptFiles == 0) File.Delete(Path);
            else
            {
                File.Delete(FileName(KeptFiles));
                for (int i = KeptFiles - 1; i >= 0; i--)
                    if (File.Exists(FileName(i))) File.Move(FileName(i), FileName(i + 1), overwrite: true);
            }
            _file = Open();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Could not rename (a read-only directory, a file in the way): start the same file over rather than grow
            // past the limit; the guest's output is never worth the host's disk.
            _file = new FileStream(NoFollowFile.OpenReadWrite(Path), FileAccess.Write, 1);
            _file.SetLength(0);
        }
        _length = 0;
        Rotations++;
    }

    public void Dispose() => _file.Dispose();
}
