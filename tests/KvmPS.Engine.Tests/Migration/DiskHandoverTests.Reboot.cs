using System.Runtime.InteropServices;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Storage;
using Xunit;

namespace KvmPS.Engine.Tests.Migration;

public partial class DiskHandoverTests
{
    /// <summary>
    /// A refused tcp hand-over whose released raw image another process locked in the meantime: the source cannot lock
    /// it again and runs on without it (the overlay it takes back), keeping its files. Once the other process let go, a
    /// guest reboot locks those files again and the disk works: jailed (the harness's default), opening root's image
    /// by path again at the reboot is denied, and the VMM ended with the reboot.
    /// </summary>
    [Fact]
    public void ADiskTheSourceCouldNotLockAgainIsLockedAgainOnItsKeptFilesAtTheGuestReboot()
    {
        using var dir = new TempDir();
        var disks = Disks.Create(dir);
        using var source = Source(dir, disks);
        string copy = dir.File("copy.raw");
        File.Copy(disks.Raw, copy);
        string uri = TcpUri();
        using var destination = new VmmProcess([.. disks.Args(raw: copy), "--incoming", uri, "--control-socket", dir.File("dst.sock"), "--serial", "file:" + dir.File("dst.log")]);
        WaitListening(destination);
        using var control = new ControlClient(dir.File("src.sock"));
        using var other = File.OpenHandle(disks.Raw, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        control.Ok("migrate", $"\"uri\": \"{uri}\", \"bandwidth_bytes_per_s\": 262144");
        var deadline = DateTime.UtcNow + Timeout;
        while (control.Ok("migrate.status").GetProperty("phase").GetString() == MigrationPhases.Setup && DateTime.UtcNow < deadline) Thread.Sleep(5);
        File.Delete(copy); // the destination refuses the released disk
        // The moment the source drops its locks, an exclusive lock on the image's first permission byte (a QEMU-style
        // holder: nobody may share it): the source's locking again then finds the image in use. The window lasts as long
        // as the refusal's round trip through the bandwidth-limited stream.
        while (!TryLockExclusively(other, QemuLockPermBase) && DateTime.UtcNow < deadline) Thread.Sleep(1);
        JsonStatus(control, out string phase, out string? error);
        log.WriteLine(source.Stderr + destination.Stderr);
        Assert.Equal(MigrationPhases.Failed, phase);
        Assert.Contains($"the disk '{disks.Raw}' at 00:01.0 could not be opened again", error);
        Assert.DoesNotContain("overlay.qcow2' at", error);
        Assert.Equal("Running", control.Ok("status").GetProperty("state").GetString());
        Assert.True(Write(source, 2, 4096, 402, Timeout), source.Stdout + source.Stderr);

        other.Dispose(); // the other holder goes
        int wrote = Wrote(source);
        source.Stdin.Write("reboot\n");
        source.Stdin.Flush();
        // The next boot runs the kernel command line again: its write to the raw disk must find the image.
        deadline = DateTime.UtcNow + Timeout;
        while (Wrote(source) == wrote && DateTime.UtcNow < deadline && !source.HasExited) Thread.Sleep(5);
        Assert.False(source.HasExited, source.Stderr);
        Assert.True(Wrote(source) > wrote, "the rebooted guest wrote the raw disk:\n" + source.Stdout + source.Stderr);
        Assert.True(InUse(disks.Raw), "the reboot locked the kept image again");
        Assert.True(Write(source, 1, 4096, 401, Timeout), source.Stdout + source.Stderr);
        control.Ok("stop", "\"graceful\": false");
        source.WaitForExit(Timeout);
        AssertWritten(disks.Raw, DiskImageFormat.Raw, 4096, 401);
        AssertWritten(disks.Overlay, DiskImageFormat.Qcow2, 4096, 402);
    }

    private const int QemuLockPermBase = 100; // QEMU's RAW_LOCK_PERM_BASE: its first byte stands for "consistent read"

    /// <summary>An exclusive OFD lock on one byte; false while another open file description holds a lock on it.</summary>
    private static bool TryLockExclusively(Microsoft.Win32.SafeHandles.SafeFileHandle file, int byteOffset)
    {
        var fl = new Flock { l_type = Libc.F_WRLCK, l_whence = Libc.SEEK_SET, l_start = byteOffset, l_len = 1 };
        if (Libc.fcntl((int)file.DangerousGetHandle(), Libc.F_OFD_SETLK, ref fl) == 0) return true;
        int errno = Marshal.GetLastPInvokeError();
        return errno is Libc.EAGAIN or Libc.EACCES or Libc.EINTR ? false : throw new IOException($"F_OFD_SETLK on byte {byteOffset}: errno {errno}");
    }
}
