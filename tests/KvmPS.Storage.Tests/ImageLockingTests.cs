using System.Diagnostics;

namespace KvmPS.Storage.Tests;

public class ImageLockingTests
{
    [Theory]
    [InlineData(DiskImageFormat.Raw)]
    [InlineData(DiskImageFormat.Qcow2)]
    public void SecondWriterIsRefusedUntilFirstCloses(DiskImageFormat format)
    {
        using var dir = new TempDirectory();
        string path = dir.File("locked.img");
        Create(path, format);
        var first = DiskImageFactory.Open(path, format);
        var e = Assert.Throws<ImageInUseException>(() => DiskImageFactory.Open(path, format));
        Assert.Equal(path, e.Path);
        Assert.Contains(path, e.Message);
        Assert.Contains("in use", e.Message);
        // A reader would see an inconsistent image under a writer: refused too (QEMU does the same).
        Assert.Throws<ImageInUseException>(() => DiskImageFactory.Open(path, format, readOnly: true));
        first.Dispose();
        DiskImageFactory.Open(path, format).Dispose();
    }

    /// <summary>
    /// A process forked while a writer had the image open shares its open file description, and so its locks, until the
    /// child's exec closes it. An open right after the writer closed must wait that moment out rather than call the
    /// image in use; a holder that stays is still refused. The child here is a `sleep` given a copy of the descriptor
    /// without close-on-exec, so it keeps the description as long as it lives.
    /// </summary>
    [Fact]
    public void AForkedChildHoldingTheLocksForAMomentDoesNotMakeTheImageInUse()
    {
        using var dir = new TempDirectory();
        string path = dir.File("forked.img");
        DiskImageFactory.CreateRaw(path, 1 << 20);
        foreach (bool childExitsSoon in new[] { true, false })
        {
            Process child;
            using (var writer = ImageFile.Open(path, writable: true))
            {
                Locking.QemuImageLock.Acquire(writer, Locking.QemuImageLock.WriterPermissions, Locking.QemuImageLock.DefaultSharedPermissions);
                int inherited = KvmPS.Interop.Libc.FcntlInt(writer.FileDescriptor, 0 /* F_DUPFD: the copy has no FD_CLOEXEC */, 10);
                Assert.True(inherited >= 10);
                try { child = Process.Start(new ProcessStartInfo("sleep", "30") { UseShellExecute = false })!; }
                finally { KvmPS.Interop.Libc.Close(inherited); }
            }
            try
            {
                var open = Task.Run(() => DiskImageFactory.Open(path, DiskImageFormat.Raw));
                if (childExitsSoon)
                {
                    Thread.Sleep(5);
                    child.Kill();
                    open.Result.Dispose(); // the writer's close plus the child's exit: the image is free
                }
                else
                {
                    var e = Assert.Throws<AggregateException>(() => open.Result.Dispose());
                    Assert.IsType<ImageInUseException>(e.InnerException);
                }
            }
            finally
            {
                if (!child.HasExited) child.Kill();
                child.WaitForExit();
            }
        }
    }

    [Fact]
    public void ReadersShareButBlockWriters()
    {
        using var dir = new TempDirectory();
        string path = dir.File("shared.qcow2");
        Create(path, DiskImageFormat.Qcow2);
        using var r1 = DiskImageFactory.Open(path, readOnly: true);
        using var r2 = DiskImageFactory.Open(path, readOnly: true);
        var e = Assert.Throws<ImageInUseException>(() => DiskImageFactory.Open(path));
        Assert.Equal("write", e.ConflictingPermission);
    }

    [QemuImgFact]
    public void QemuRefusesAnImageWeHoldForWriting()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ours.qcow2");
        Create(path, DiskImageFormat.Qcow2);
        using (DiskImageFactory.Open(path))
        {
            var r = QemuTools.Img("info", path);
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains("lock", r.Stderr);
            if (QemuTools.QemuIo is not null)
            {
                var w = QemuTools.Io("-f", "qcow2", "-c", "write 0 512", path);
                Assert.Contains("Failed to get \"write\" lock", w.Stderr + w.Stdout);
            }
        }
        Assert.Equal(0, QemuTools.Img("info", path).ExitCode);
    }

    [QemuIoFact]
    public void RunningQemuWriterBlocksUs()
    {
        using var dir = new TempDirectory();
        string path = dir.File("theirs.raw");
        Create(path, DiskImageFormat.Raw);
        var psi = new ProcessStartInfo(QemuTools.QemuIo!)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-f");
        psi.ArgumentList.Add("raw");
        psi.ArgumentList.Add(path);
        using var qemuIo = Process.Start(psi)!;
        try
        {
            // qemu-io takes its locks when it opens the image, before reading commands.
            var deadline = DateTime.UtcNow.AddSeconds(15);
            ImageInUseException? refused = null;
            while (refused is null && DateTime.UtcNow < deadline)
            {
                try
                {
                    DiskImageFactory.Open(path).Dispose();
                    Thread.Sleep(50);
                }
                catch (ImageInUseException e)
                {
                    refused = e;
                }
            }
            Assert.NotNull(refused);
            Assert.Contains(path, refused!.Message);
        }
        finally
        {
            qemuIo.StandardInput.WriteLine("quit");
            qemuIo.StandardInput.Close();
            if (!qemuIo.WaitForExit(10_000))
            {
                qemuIo.Kill();
            }
        }
        DiskImageFactory.Open(path).Dispose();
    }

    private static void Create(string path, DiskImageFormat format)
    {
        if (format == DiskImageFormat.Raw)
        {
            DiskImageFactory.CreateRaw(path, 1 << 20);
        }
        else
        {
            DiskImageFactory.CreateQcow2(path, 1 << 20);
        }
    }
}
