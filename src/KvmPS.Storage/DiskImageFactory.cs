using KvmPS.Storage.Locking;
using KvmPS.Storage.Qcow2;
using KvmPS.Storage.Raw;

namespace KvmPS.Storage;

/// <summary>Creates disk images and opens them as <see cref="IBlockBackend"/>s.</summary>
public static class DiskImageFactory
{
    /// <summary>Longest backing chain followed before giving up (guards against pathological chains).</summary>
    public const int MaxBackingChainDepth = 64;

    /// <summary>Creates a sparse raw image of <paramref name="sizeBytes"/> (a multiple of 512).</summary>
    public static void CreateRaw(string path, ulong sizeBytes)
    {
        if (sizeBytes % RawImage.SectorSizeBytes != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(sizeBytes), $"Size {sizeBytes} for raw image '{path}' must be a multiple of {RawImage.SectorSizeBytes} bytes.");
        }
        try
        {
            using var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
            RandomAccess.SetLength(handle, (long)sizeBytes);
        }
        catch (IOException e)
        {
            throw new DiskImageException(path, $"Cannot create raw image '{path}': {e.Message}", e);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new DiskImageException(path, $"Cannot create raw image '{path}': access denied.", e);
        }
    }

    /// <summary>
    /// Creates an empty qcow2 v3 image. With a backing file and <paramref name="sizeBytes"/> 0 the
    /// backing file's size is used.
    /// </summary>
    public static void CreateQcow2(string path, ulong sizeBytes, Qcow2CreateOptions? options = null)
    {
        options ??= new Qcow2CreateOptions();
        string? backingFormatName = null;
        if (options.BackingFile is not null)
        {
            string backingPath = ResolveBackingPath(path, options.BackingFile);
            if (!File.Exists(backingPath))
            {
                throw new DiskImageException(backingPath, $"Backing file '{backingPath}' for new image '{path}' does not exist.");
            }
            DiskImageFormat backingFormat = options.BackingFormat == DiskImageFormat.Auto ? DetectFormat(backingPath) : options.BackingFormat;
            backingFormatName = FormatName(backingFormat);
            if (sizeBytes == 0)
            {
                using var backing = Open(backingPath, backingFormat, readOnly: true);
                sizeBytes = (backing.SizeBytes + 511) & ~511UL;
            }
        }
        Qcow2Creator.Create(path, sizeBytes, options.ClusterSizeBytes, options.RefcountBits, options.BackingFile, backingFormatName);
    }

    /// <summary>
    /// Opens an image (and its backing chain) with QEMU-compatible locking.
    /// </summary>
    /// <exception cref="ImageInUseException">Another process holds a conflicting lock.</exception>
    /// <exception cref="DiskImageException">The image is missing, malformed or unsupported.</exception>
    public static IBlockBackend Open(string path, DiskImageFormat format = DiskImageFormat.Auto, bool readOnly = false)
    {
        return OpenInChain(path, format, readOnly, new List<string>());
    }

    /// <summary>Opens a qcow2 image, for access to snapshots and format details.</summary>
    public static Qcow2Image OpenQcow2(string path, bool readOnly = false)
    {
        return (Qcow2Image)Open(path, DiskImageFormat.Qcow2, readOnly);
    }

    /// <summary>
    /// Opens a qcow2 image without its backing chain, for snapshot management on a closed image
    /// (like <c>qemu-img snapshot</c>, which needs no backing file either). Guest I/O on it is refused.
    /// </summary>
    /// <param name="forceShare">Read-only, ignoring other openers' locks (<c>qemu-img -U</c>): the result may be stale.</param>
    internal static Qcow2Image OpenQcow2ForSnapshots(string path, bool readOnly, bool forceShare = false)
    {
        var file = ImageFile.Open(path, writable: !readOnly);
        try
        {
            if (forceShare)
            {
                // Like QEMU's force-share: claim nothing, share everything.
                QemuImageLock.Acquire(file, QemuPermission.None, QemuPermission.All);
            }
            else
            {
                QemuImageLock.Acquire(file,
                    readOnly ? QemuImageLock.ReaderPermissions : QemuImageLock.WriterPermissions,
                    QemuImageLock.DefaultSharedPermissions);
            }
            return Qcow2Image.Open(file, (_, _) => null);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>qcow2 when the file starts with the qcow2 magic, raw otherwise.</summary>
    public static DiskImageFormat DetectFormat(string path)
    {
        using var file = ImageFile.Open(path, writable: false);
        return DetectFormat(file);
    }

    private static DiskImageFormat DetectFormat(ImageFile file)
    {
        Span<byte> magic = stackalloc byte[4];
        file.Read(0, magic);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(magic) == Qcow2Format.QCOW_MAGIC
            ? DiskImageFormat.Qcow2
            : DiskImageFormat.Raw;
    }

    /// <summary>
    /// Opens an image and its backing chain on files another process opened and handed over (a live upgrade's disk
    /// hand-over, docs/migration.md): <paramref name="files"/> in chain order, the top image first. Each must be the
    /// very file (device and inode) its path names here, opened for writing where the image is written; the files keep
    /// the locks their opener took (OFD locks belong to the open file description), and the usual locks are taken on
    /// them again, which adds nothing when they are held. On failure every file is closed.
    /// </summary>
    /// <exception cref="DiskImageException">A file is not the one its path names, is not writable, or the chain has more or fewer images than files.</exception>
    public static IBlockBackend OpenHandedOver(string path, DiskImageFormat format, bool readOnly, IReadOnlyList<Microsoft.Win32.SafeHandles.SafeFileHandle> files) =>
        OpenOnFiles(path, format, readOnly, files, checkIdentity: true);

    /// <summary>
    /// As <see cref="OpenHandedOver"/>, on files management opened and passed (docs/vmm.md, "Passing open files"), or
    /// this VMM kept across a guest reboot: not compared with the paths, which a jailed VMM may not see. The file count
    /// must still be the chain's length, and the top file writable unless the disk is read-only. On failure every file is closed.
    /// </summary>
    public static IBlockBackend OpenPassed(string path, DiskImageFormat format, bool readOnly, IReadOnlyList<Microsoft.Win32.SafeHandles.SafeFileHandle> files) =>
        OpenOnFiles(path, format, readOnly, files, checkIdentity: false);

    /// <summary>
    /// Management's side of <see cref="OpenPassed"/>: opens <paramref name="path"/> and its backing chain with
    /// <paramref name="open"/> (the top for writing unless <paramref name="readOnly"/>, backing files read-only), reading
    /// only the qcow2 headers (no lock taken, nothing written), and returns the files in chain order. On failure every
    /// file opened is closed.
    /// </summary>
    public static IReadOnlyList<Microsoft.Win32.SafeHandles.SafeFileHandle> OpenChainFiles(string path, DiskImageFormat format, bool readOnly,
        Func<string, bool, Microsoft.Win32.SafeHandles.SafeFileHandle> open)
    {
        var files = new List<Microsoft.Win32.SafeHandles.SafeFileHandle>();
        var chain = new List<string>();
        try
        {
            for (string at = path; ;)
            {
                string canonical = CanonicalPath(at);
                if (chain.Contains(canonical) || chain.Count >= MaxBackingChainDepth)
                    throw new BackingChainLoopException(path, [.. chain, canonical], $"Backing chain of '{path}' loops or is deeper than {MaxBackingChainDepth} images.");
                chain.Add(canonical);
                bool writable = files.Count == 0 && !readOnly;
                var handle = open(at, writable);
                files.Add(handle);
                var file = ImageFile.FromHandle(at, handle, writable); // not disposed: the handle is the caller's
                if (format == DiskImageFormat.Auto) format = DetectFormat(file);
                if (format == DiskImageFormat.Raw) return files;
                var header = Qcow2Image.ReadHeader(file);
                if (header.BackingFileName is null) return files;
                format = ParseFormat(at, header.BackingFormat);
                at = ResolveBackingPath(at, header.BackingFileName);
            }
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    private static IBlockBackend OpenOnFiles(string path, DiskImageFormat format, bool readOnly, IReadOnlyList<Microsoft.Win32.SafeHandles.SafeFileHandle> files, bool checkIdentity)
    {
        var handedOver = new HandedOverFiles(files, checkIdentity);
        try
        {
            var backend = OpenInChain(path, format, readOnly, new List<string>(), handedOver.Take);
            if (handedOver.Left > 0)
            {
                backend.Dispose();
                throw new DiskImageException(path, $"{files.Count} files were {(checkIdentity ? "handed over" : "passed")} for disk image '{path}', but its backing chain has {files.Count - handedOver.Left} images.");
            }
            return backend;
        }
        finally
        {
            handedOver.CloseUntaken();
        }
    }

    /// <summary>
    /// The open files of <paramref name="backend"/> (raw or qcow2 and, for qcow2, its backing chain), the top image
    /// first: what a live upgrade hands to the next VMM.
    /// </summary>
    public static IReadOnlyList<(string Path, Microsoft.Win32.SafeHandles.SafeFileHandle File)> OpenFiles(IBlockBackend backend)
    {
        var files = new List<(string, Microsoft.Win32.SafeHandles.SafeFileHandle)>();
        for (IBlockBackend? at = backend; at is not null;)
        {
            switch (at)
            {
                case RawImage raw: files.Add((raw.Path, raw.File.Handle)); at = null; break;
                case Qcow2Image qcow2: files.Add((qcow2.Path, qcow2.File.Handle)); at = qcow2.Backing; break;
                default: throw new NotSupportedException($"the disk '{at.Path}' is a {at.GetType().Name}, whose file cannot be handed over");
            }
        }
        return files;
    }

    /// <summary>
    /// Drops the image locks held through <paramref name="file"/> (its open file description: every descriptor of it),
    /// leaving it open: a migration over tcp releases a disk this way, and <see cref="OpenPassed"/> on the same files
    /// takes the locks again if the destination refuses.
    /// </summary>
    /// <exception cref="DiskImageException">The kernel refused the unlock.</exception>
    public static void ReleaseLocks(string path, Microsoft.Win32.SafeHandles.SafeFileHandle file)
    {
        bool added = false;
        file.DangerousAddRef(ref added);
        try { Locking.QemuImageLock.Release(path, (int)file.DangerousGetHandle()); }
        finally { if (added) file.DangerousRelease(); }
    }

    /// <summary>
    /// The virtual size of an image, read without taking or testing any lock (like <c>qemu-img info -U</c>): for a
    /// device whose image is handed over later, while another process still writes it. The size does not change while
    /// the image runs.
    /// </summary>
    public static ulong ReadVirtualSize(string path, DiskImageFormat format)
    {
        if (format == DiskImageFormat.Auto) format = DetectFormat(path);
        if (format == DiskImageFormat.Raw)
        {
            using var raw = RawImage.Open(path, readOnly: true, takeLock: false);
            return raw.SizeBytes;
        }
        using var qcow2 = OpenQcow2ForSnapshots(path, readOnly: true, forceShare: true);
        return qcow2.SizeBytes;
    }

    private static IBlockBackend OpenInChain(string path, DiskImageFormat format, bool readOnly, List<string> chain,
        Func<string, bool, ImageFile>? openFile = null)
    {
        openFile ??= ImageFile.Open;
        string canonical = CanonicalPath(path);
        if (chain.Contains(canonical))
        {
            var loop = new List<string>(chain) { canonical };
            throw new BackingChainLoopException(chain[0], loop,
                $"Backing chain of '{chain[0]}' loops: {string.Join(" -> ", loop)}.");
        }
        chain.Add(canonical);
        if (chain.Count > MaxBackingChainDepth)
        {
            throw new BackingChainLoopException(chain[0], chain.ToList(),
                $"Backing chain of '{chain[0]}' is deeper than {MaxBackingChainDepth} images.");
        }
        var file = openFile(path, !readOnly);
        try
        {
            if (format == DiskImageFormat.Auto)
            {
                format = DetectFormat(file);
            }
            if (format == DiskImageFormat.Raw)
            {
                // Backing files (chain position > 0) need not be whole sectors; QEMU accepts any size.
                return RawImage.OpenOn(file, readOnly, requireWholeSectors: chain.Count == 1);
            }
            QemuImageLock.Acquire(file,
                readOnly ? QemuImageLock.ReaderPermissions : QemuImageLock.WriterPermissions,
                QemuImageLock.DefaultSharedPermissions);
            return Qcow2Image.Open(file, (backingName, backingFormat) =>
            {
                string backingPath = ResolveBackingPath(path, backingName);
                return OpenInChain(backingPath, ParseFormat(path, backingFormat), readOnly: true, chain, openFile);
            });
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>Relative backing names are relative to the directory of the image naming them.</summary>
    internal static string ResolveBackingPath(string imagePath, string backingName)
    {
        if (System.IO.Path.IsPathRooted(backingName))
        {
            return backingName;
        }
        string directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(imagePath)) ?? ".";
        return System.IO.Path.GetFullPath(System.IO.Path.Combine(directory, backingName));
    }

    private static string CanonicalPath(string path)
    {
        string full = System.IO.Path.GetFullPath(path);
        try
        {
            var target = new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true);
            return target?.FullName ?? full;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Not resolvable here (a jailed VMM given the open file may not even look the path up): taken as written.
            return full;
        }
    }

    private static DiskImageFormat ParseFormat(string imagePath, string? name) => name switch
    {
        null or "" => DiskImageFormat.Auto,
        "raw" or "file" => DiskImageFormat.Raw,
        "qcow2" => DiskImageFormat.Qcow2,
        _ => throw new UnsupportedImageFeatureException(imagePath, $"backing format {name}",
            $"Image '{imagePath}' has a backing file in format '{name}'; only raw and qcow2 backing files are supported."),
    };

    private static string FormatName(DiskImageFormat format) => format switch
    {
        DiskImageFormat.Raw => "raw",
        DiskImageFormat.Qcow2 => "qcow2",
        _ => throw new ArgumentOutOfRangeException(nameof(format)),
    };
}
