using System.Diagnostics;
using System.Text.RegularExpressions;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using KvmPS.Storage;
using KvmPS.Storage.Qcow2;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>
/// Local live upgrade of a VM with disks (docs/migration.md, "Local live upgrade"): a raw disk and a qcow2 overlay on a
/// raw backing file; the built-in guest writes both (typed on its console, one 64 KiB request after another) while the
/// VM moves to a new kvmps-vmm over a Unix socket. The disks' open files are handed over: the new VMM serves the guest,
/// which writes on; what was written before, during and after reads back, qemu-img check finds the overlay clean, the
/// images stay locked until the new VMM exits and are free after; a hand-over the new VMM refuses leaves the old one
/// owning the disks and running.
/// </summary>
[Collection("vmm-process")]
public partial class DiskHandoverTests(ITestOutputHelper log)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private const int Sectors = 128; // one 64 KiB request

    [GeneratedRegex(@"^blk: wrote 128\r?$", RegexOptions.Multiline)]
    private static partial Regex WroteLine();

    private static int Wrote(VmmProcess p) => WroteLine().Matches(p.Stdout).Count;

    private sealed class Disks
    {
        public required string Raw, Base, Overlay;

        public static Disks Create(TempDir dir)
        {
            var d = new Disks { Raw = dir.File("data.raw"), Base = dir.File("base.raw"), Overlay = dir.File("overlay.qcow2") };
            DiskImageFactory.CreateRaw(d.Raw, 16UL << 20);
            DiskImageFactory.CreateRaw(d.Base, 16UL << 20);
            using (var b = DiskImageFactory.Open(d.Base, DiskImageFormat.Raw))
                b.Write(1024 * 512, BlockTestData.Pattern(Sectors, 200)); // only in the backing file: read through the chain
            DiskImageFactory.CreateQcow2(d.Overlay, 0, new Qcow2CreateOptions { BackingFile = "base.raw", BackingFormat = DiskImageFormat.Raw });
            return d;
        }

        public string[] Args(string? raw = null) =>
            ["--memfd", "on", "--device", $"block,path={raw ?? Raw},format=raw", "--device", $"block,path={Overlay},format=qcow2"];
    }

    /// <summary>Types one write on the VMM's console and waits for its answer; false when none came (the VMM left).</summary>
    private static bool Write(VmmProcess vmm, int slot, long sector, uint seed, TimeSpan wait)
    {
        int before = Wrote(vmm);
        try
        {
            vmm.Stdin.Write($"blk @{slot:x2} write {sector} {Sectors} {seed}\n");
            vmm.Stdin.Flush();
        }
        catch (IOException) { return false; }
        var deadline = DateTime.UtcNow + wait;
        while (Wrote(vmm) == before && DateTime.UtcNow < deadline && !vmm.HasExited) Thread.Sleep(2);
        return Wrote(vmm) > before;
    }

    private static VmmProcess Source(TempDir dir, Disks disks)
    {
        var source = new VmmProcess([.. disks.Args(), "--control-socket", dir.File("src.sock"), "--cmdline", $"kvmps.run=blk @01 write 0 {Sectors} 101"], redirectStdin: true);
        Assert.True(source.WaitForStdout("blk: wrote 128", Timeout), source.Stdout + source.Stderr);
        Assert.True(Write(source, 2, 0, 102, Timeout), "the guest writes the overlay:\n" + source.Stdout + source.Stderr);
        return source;
    }

    private static void WaitListening(VmmProcess destination)
    {
        var deadline = DateTime.UtcNow + Timeout;
        while (!destination.Stderr.Contains("waiting for a migration stream") && DateTime.UtcNow < deadline && !destination.HasExited) Thread.Sleep(10);
        Assert.Contains("waiting for a migration stream", destination.Stderr);
    }

    private static bool InUse(string path)
    {
        try { using var image = DiskImageFactory.Open(path); return false; }
        catch (ImageInUseException) { return true; }
    }

    private static void AssertWritten(string image, DiskImageFormat format, long sector, uint seed)
    {
        using var disk = DiskImageFactory.Open(image, format, readOnly: true);
        var data = new byte[Sectors * 512];
        disk.Read((ulong)sector * 512, data);
        Assert.True(BlockTestData.Pattern(Sectors, seed).AsSpan().SequenceEqual(data), $"{image}: sectors {sector}+{Sectors} hold the pattern of seed {seed}");
    }

    private static string TcpUri()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return $"tcp:127.0.0.1:{((System.Net.IPEndPoint)l.LocalEndpoint).Port}";
    }

    /// <summary>
    /// unix: the live upgrade (the open files go over). tcp: shared storage, as between two hosts (the source closes
    /// the images at the pause and the destination opens them by path then).
    /// </summary>
    [Theory]
    [InlineData("unix")]
    [InlineData("tcp")]
    public void TheDisksAreHandedOverWhileTheGuestWritesThemAndTheNewVmmServesThem(string transport)
    {
        using var dir = new TempDir();
        var disks = Disks.Create(dir);
        using var source = Source(dir, disks);
        Assert.True(InUse(disks.Raw) && InUse(disks.Overlay), "the source holds the images' locks");
        string uri = transport == "unix" ? "unix:" + dir.File("up.sock") : TcpUri();
        using var destination = new VmmProcess([.. disks.Args(), "--incoming", uri, "--control-socket", dir.File("dst.sock"), "--cmdline", "kvmps.run=blk info"], redirectStdin: true);
        WaitListening(destination);
        // The guest writes on, alternating disks, each write to a sector of its own, one request after the other: before
        // the migrate request, through the hand-over, until the source has let go.
        var answered = new List<(int Slot, long Sector, uint Seed)>();
        (int Slot, long Sector, uint Seed) pending = default;
        var writer = Task.Run(() =>
        {
            for (int i = 0; !source.HasExited && i < 5000; i++)
            {
                var next = (1 + i % 2, 256L + i * Sectors, (uint)(1000 + i));
                lock (answered) pending = next;
                if (!Write(source, next.Item1, next.Item2, next.Item3, TimeSpan.FromSeconds(5))) break;
                lock (answered) { answered.Add(next); pending = default; }
            }
        });
        var deadline = DateTime.UtcNow + Timeout;
        while (answered.Count < 4 && DateTime.UtcNow < deadline) Thread.Sleep(2);
        int before;
        lock (answered) before = answered.Count;
        using (var control = new ControlClient(dir.File("src.sock"))) control.Ok("migrate", $"\"uri\": \"{uri}\"");
        Assert.Equal(VmmExitCode.Migrated, source.WaitForExit(Timeout));
        Assert.True(writer.Wait(Timeout));
        log.WriteLine(source.Stderr + destination.Stderr + $"writes answered by the old VMM: {before} before the migrate request, {answered.Count - before} after it");
        if (transport == "unix")
        {
            var line = Regex.Match(source.Stderr, @"migrated to .*: total (\d+) ms, downtime (\d+) ms, (\d+) bytes, memory passed as memfds \(not copied\), 2 disks handed over \(not copied\)");
            Assert.True(line.Success, source.Stderr);
            Assert.True(long.Parse(line.Groups[3].Value) < 1 << 20, "only the state went over the socket");
            Assert.Contains("2 disks handed over (not copied)", destination.Stderr);
        }
        else
        {
            Assert.Matches(@"migrated to tcp:.*: total \d+ ms, downtime \d+ ms, \d+ bytes, \d+ pages in \d+ rounds, 2 disks released to the destination", source.Stderr);
            Assert.Contains("2 disks opened at the hand-over", destination.Stderr);
        }

        // The write typed last may have been in the guest when it paused: it completes in the new VMM.
        // Under load it may take longer than a moment (once 3 writes were counted where 2 were typed after): wait for it
        // up to 3 s; a request the old guest had not read yet never comes, so the wait is bounded.
        Thread.Sleep(300);
        for (var waited = Stopwatch.StartNew(); pending != default && Wrote(destination) == 0 && waited.ElapsedMilliseconds < 3000;)
            Thread.Sleep(20);
        if (pending != default && Wrote(destination) == 1) answered.Add(pending);
        int onDestination = Wrote(destination);

        // The new VMM holds the images now (the old one is gone): still locked, no window without the lock.
        Assert.True(InUse(disks.Raw) && InUse(disks.Overlay), "the new VMM holds the images' locks");
        using (var control = new ControlClient(dir.File("dst.sock"), TimeSpan.FromSeconds(30)))
        {
            Assert.Equal("Running", control.Ok("status").GetProperty("state").GetString());
            Assert.Equal(destination.Pid, control.Ok("describe").GetProperty("pid").GetInt32());
        }
        // The guest writes on in the new VMM, and reads there what was written before (the backing file's sectors too).
        Assert.True(Write(destination, 1, 8192, 301, Timeout), destination.Stdout + destination.Stderr);
        Assert.True(Write(destination, 2, 8192, 302, Timeout), destination.Stdout + destination.Stderr);
        Assert.Equal(onDestination + 2, Wrote(destination));
        foreach (var (slot, sector, seed) in new[] { (1, 0L, 101u), (2, 0L, 102u), (2, 1024L, 200u) })
        {
            destination.Stdin.Write($"blk @{slot:x2} read {sector} {Sectors}\n");
            destination.Stdin.Flush();
            Assert.True(destination.WaitForStdout(BlockTestData.CrcLine(BlockTestData.Pattern(Sectors, seed)), Timeout), $"slot {slot} sector {sector}:\n" + destination.Stdout);
        }

        using (var control = new ControlClient(dir.File("dst.sock"))) control.Ok("stop", "\"graceful\": false");
        destination.WaitForExit(Timeout);
        Assert.False(InUse(disks.Raw) || InUse(disks.Overlay), "no lock is left once both VMMs are gone");
        AssertWritten(disks.Raw, DiskImageFormat.Raw, 0, 101);
        AssertWritten(disks.Overlay, DiskImageFormat.Qcow2, 0, 102);
        AssertWritten(disks.Overlay, DiskImageFormat.Qcow2, 1024, 200);
        foreach (var (slot, sector, seed) in answered)
            AssertWritten(slot == 1 ? disks.Raw : disks.Overlay, slot == 1 ? DiskImageFormat.Raw : DiskImageFormat.Qcow2, sector, seed);
        AssertWritten(disks.Raw, DiskImageFormat.Raw, 8192, 301);
        AssertWritten(disks.Overlay, DiskImageFormat.Qcow2, 8192, 302);
        if (BlockTestData.QemuImg is not null)
        {
            var check = BlockTestData.QemuImgCheck(disks.Overlay);
            Assert.True(check.Code == 0, "qemu-img check: " + check.Output);
        }
    }

    [Fact]
    public void ADestinationThatCannotOpenTheReleasedDisksLeavesTheSourceReopeningThemAndRunning()
    {
        // tcp: the source closes its images at the pause. The destination's image (a copy, as on another host) is gone
        // by then, so its open fails: the source locks the files it kept again and runs on, locks and all. Jailed (the
        // harness's default) the images are root's, which the source's user could not open again by path.
        using var dir = new TempDir();
        var disks = Disks.Create(dir);
        using var source = Source(dir, disks);
        string copy = dir.File("copy.raw");
        File.Copy(disks.Raw, copy);
        string uri = TcpUri();
        using var destination = new VmmProcess([.. disks.Args(raw: copy), "--incoming", uri, "--control-socket", dir.File("dst.sock"), "--serial", "file:" + dir.File("dst.log")]);
        WaitListening(destination);
        using var control = new ControlClient(dir.File("src.sock"));
        // 256 KiB/s: pre-copy takes seconds, long enough to take the image away after the destination was built.
        control.Ok("migrate", $"\"uri\": \"{uri}\", \"bandwidth_bytes_per_s\": 262144");
        var deadline = DateTime.UtcNow + Timeout;
        while (control.Ok("migrate.status").GetProperty("phase").GetString() == MigrationPhases.Setup && DateTime.UtcNow < deadline) Thread.Sleep(5);
        File.Delete(copy);
        JsonStatus(control, out string phase, out string? error);
        log.WriteLine(source.Stderr + destination.Stderr);
        Assert.Equal(MigrationPhases.Failed, phase);
        Assert.Contains("copy.raw", error);
        Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));

        Assert.False(source.HasExited);
        Assert.Equal("Running", control.Ok("status").GetProperty("state").GetString());
        Assert.True(InUse(disks.Raw) && InUse(disks.Overlay), "the source opened its images again");
        Assert.True(Write(source, 1, 4096, 401, Timeout), source.Stdout + source.Stderr);
        Assert.True(Write(source, 2, 4096, 402, Timeout), source.Stdout + source.Stderr);
        control.Ok("stop", "\"graceful\": false");
        source.WaitForExit(Timeout);
        Assert.False(InUse(disks.Raw) || InUse(disks.Overlay), "no lock is left once the VMM is gone");
        AssertWritten(disks.Raw, DiskImageFormat.Raw, 0, 101);
        AssertWritten(disks.Raw, DiskImageFormat.Raw, 4096, 401);
        AssertWritten(disks.Overlay, DiskImageFormat.Qcow2, 4096, 402);
        if (BlockTestData.QemuImg is not null)
        {
            var check = BlockTestData.QemuImgCheck(disks.Overlay);
            Assert.True(check.Code == 0, "qemu-img check: " + check.Output);
        }
    }

    [Fact]
    public void AHandOverTheNewVmmRefusesLeavesTheOldOneOwningTheDisksAndRunning()
    {
        using var dir = new TempDir();
        var disks = Disks.Create(dir);
        using var source = Source(dir, disks);
        // The new VMM is configured with a copy of the raw disk: the file handed over is not the one its path names.
        string copy = dir.File("copy.raw");
        File.Copy(disks.Raw, copy);
        string uri = "unix:" + dir.File("up.sock");
        using var destination = new VmmProcess([.. disks.Args(raw: copy), "--incoming", uri, "--control-socket", dir.File("dst.sock"), "--serial", "file:" + dir.File("dst.log")]);
        WaitListening(destination);
        using var control = new ControlClient(dir.File("src.sock"));
        control.Ok("migrate", $"\"uri\": \"{uri}\"");
        JsonStatus(control, out string phase, out string? error);
        log.WriteLine(source.Stderr + destination.Stderr);
        Assert.Equal(MigrationPhases.Failed, phase);
        Assert.Contains("copy.raw", error);
        Assert.Contains("another file", error);
        Assert.Equal(VmmExitCode.IncomingFailed, destination.WaitForExit(Timeout));

        // The old VMM runs the guest on, on its own open images, locks and all.
        Assert.False(source.HasExited);
        Assert.Equal("Running", control.Ok("status").GetProperty("state").GetString());
        Assert.True(InUse(disks.Raw) && InUse(disks.Overlay), "the old VMM still holds the images");
        Assert.True(Write(source, 1, 4096, 401, Timeout), source.Stdout + source.Stderr);
        Assert.True(Write(source, 2, 4096, 402, Timeout), source.Stdout + source.Stderr);
        control.Ok("stop", "\"graceful\": false");
        source.WaitForExit(Timeout);
        Assert.False(InUse(disks.Raw) || InUse(disks.Overlay), "no lock is left once the VMM is gone");
        AssertWritten(disks.Raw, DiskImageFormat.Raw, 4096, 401);
        AssertWritten(disks.Overlay, DiskImageFormat.Qcow2, 4096, 402);
        AssertWritten(disks.Overlay, DiskImageFormat.Qcow2, 0, 102);
        if (BlockTestData.QemuImg is not null)
        {
            var check = BlockTestData.QemuImgCheck(disks.Overlay);
            Assert.True(check.Code == 0, "qemu-img check: " + check.Output);
        }
    }

    private static void JsonStatus(ControlClient control, out string phase, out string? error)
    {
        var deadline = DateTime.UtcNow + Timeout;
        System.Text.Json.JsonElement status;
        do
        {
            status = control.Ok("migrate.status");
            phase = status.GetProperty("phase").GetString()!;
            if (phase is MigrationPhases.Failed or MigrationPhases.Completed or MigrationPhases.Cancelled) break;
            Thread.Sleep(10);
        } while (DateTime.UtcNow < deadline);
        error = status.TryGetProperty("error", out var e) ? e.GetString() : null;
    }
}
