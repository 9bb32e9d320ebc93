using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using KvmPS.Engine.Tests.Devices;
using KvmPS.Engine.Tests.Support;
using Xunit.Abstractions;
using static KvmPS.Engine.Tests.RealLinux.RealLinuxSnapshot;

namespace KvmPS.Engine.Tests.RealLinux;

/// <summary>
/// Issue 12's real-Linux migration: two "hosts" on this machine, network namespaces joined by a veth pair, each with
/// a tap the guest's virtio-net is plugged into (the same gateway address on both sides, as two hosts on one guest
/// network). Linux on two vCPUs runs the agent's disk-and-ping workload on the source; the VMM's own <c>migrate</c>
/// moves it over TCP across the veth to <c>kvmps-vmm --incoming</c> in the other namespace, copying its qcow2 disk
/// live (<c>include_storage</c>) while Linux writes to it. On the destination the same Linux answers, its workload
/// goes on counting, writing and pinging through the destination's tap, what it reads back from the copied disk is
/// what it wrote, the host reads the same records from the destination's image, and <c>qemu-img check</c> is clean.
/// </summary>
[Trait("Category", "RealLinux")]
[Collection(RealLinuxCollection.Name)]
public sealed class RealLinuxMigrationTests(ITestOutputHelper log)
{
    private const string Mac = "52:54:00:00:97:02";

    [NetNsFact]
    public void LinuxMovesBetweenNamespaceHostsWhileItWritesItsDiskAndPings()
    {
        using var source = new NetNs();
        using var destination = new NetNs();
        source.JoinByVeth(destination, "10.97.0.1/24", "10.97.0.2/24");
        // One guest network seen from both hosts: the same gateway address and MAC (the guest's ARP entry stays valid).
        foreach (var host in new[] { source, destination })
        {
            host.Ip("tuntap", "add", "kvl0", "mode", "tap");
            host.Ip("link", "set", "kvl0", "address", "02:00:00:97:00:01");
            host.Ip("addr", "add", "10.98.0.1/24", "dev", "kvl0");
            host.Ip("link", "set", "kvl0", "up");
        }

        using var dir = new TempDir();
        string sourceDisk = dir.File("a.qcow2"), destinationDisk = dir.File("b.qcow2");
        RealLinuxTests.Exec("qemu-img", "create", "-q", "-f", "qcow2", sourceDisk, "1M");
        const int vcpus = 2;
        const string memory = "256M";
        string[] Devices(string disk) => ["--device", $"net,tap=kvl0,mac={Mac}", "--device", $"block,path={disk},serial=wdisk"];

        using var guest = new LinuxGuest(dir, vcpus, memory, source.Name, Devices(sourceDisk));
        log.WriteLine($"boot to the agent with {vcpus} vCPUs: {guest.BootTime.TotalSeconds:F1} s");
        Assert.Contains(guest.Run("net eth0 10.98.0.2 10.98.0.1", TimeSpan.FromMinutes(2)), l => l.Contains("1 packets received"));
        string disk = RealLinuxTests.DeviceWithSerial(guest.Run("blocks"), "wdisk");
        Assert.Contains(guest.Run($"workload start {disk} 10.98.0.1"), l => l.StartsWith("workload started "));
        var before = WaitForRounds(c => guest.Run(c), w => w.Count >= 2 && w.PingsOk >= 1, "before the migration");
        log.WriteLine($"workload on the source: {before}");

        int port = 47000 + Random.Shared.Next(2000);
        string uri = $"tcp:10.97.0.2:{port.ToString(CultureInfo.InvariantCulture)}";
        using var moved = LinuxGuest.Incoming(dir, uri, vcpus, memory, destination.Name, Devices(destinationDisk));
        var waiting = Stopwatch.StartNew();
        while (!moved.Stderr.Contains("waiting for a migration stream"))
        {
            Assert.True(!moved.HasExited && waiting.Elapsed < TimeSpan.FromSeconds(60), $"the destination does not wait for a stream:\n{moved.Diagnostics()}");
            Thread.Sleep(50);
        }

        JsonElement status;
        var clock = Stopwatch.StartNew();
        using (var control = new ControlClient(guest.ControlSocket))
        {
            control.Ok("migrate", $"\"uri\": \"{uri}\", \"include_storage\": true");
            while (true)
            {
                try { status = control.Ok("migrate.status"); }
                catch (Exception e) when (e is IOException or InvalidOperationException)
                {
                    break; // the source handed the VM over and exited: its socket closed under the poll
                }
                string phase = status.GetProperty("phase").GetString()!;
                Assert.True(phase is not ("failed" or "cancelled"), $"the migration ended {phase}: {status}\n{guest.Diagnostics()}\n--- destination ---\n{moved.Diagnostics()}");
                if (phase == "completed") break;
                Assert.True(clock.Elapsed < TimeSpan.FromMinutes(5), $"the migration did not finish: {status}");
                Thread.Sleep(100);
            }
        }
        Assert.Equal(14, guest.WaitForExit(TimeSpan.FromMinutes(2)));
        log.WriteLine($"source: {LinuxGuest.Tail(guest.Stderr, 3)}");
        log.WriteLine($"destination: {LinuxGuest.Tail(moved.Stderr, 3)}");
        Assert.Contains("received the VM from", moved.Stderr);

        // The same Linux answers on the destination's console, with the workload's state from the source.
        var first = WorkloadStatus.Parse(moved.Run("workload status"));
        log.WriteLine($"first answer on the destination: {first}");
        Assert.Equal("running", first.State);
        Assert.True(first.Count >= before.Count, $"the workload's count went back from {before.Count} to {first.Count}");
        // It goes on: more records on the copied disk and pings answered through the destination's tap.
        var goingOn = WaitForRounds(c => moved.Run(c), w => w.Count >= first.Count + 2 && w.PingsOk > first.PingsOk, "after the migration");
        log.WriteLine($"workload on the destination: {goingOn}");
        using (var control = new ControlClient(moved.ControlSocket))
            Assert.Equal("Running", control.Ok("status").GetProperty("state").GetString());

        var stopped = WorkloadStatus.Parse(moved.Run("workload stop", TimeSpan.FromMinutes(12)));
        Assert.Equal("stopped", stopped.State);
        Assert.Null(stopped.Error);
        var (verifyRc, verifyReply) = moved.RunForRc("workload verify");
        var verify = LinuxGuest.Fields(verifyReply, "workload");
        moved.Run("poweroff");
        Assert.Equal(0, moved.WaitForExit(TimeSpan.FromSeconds(90)));

        // On the host: the destination's image is clean and holds what Linux says it wrote.
        RealLinuxTests.Exec("qemu-img", "check", "-q", destinationDisk);
        var records = new RealLinuxSnapshot(log, destination.Name, dir, destinationDisk, dir.File("unused.sock")).ReadRecords(forceShare: false);
        Assert.Equal(verify["disk_sha256"], records.Sha256);
        Assert.True(verifyRc == 0 && verify["ok"] == "1", $"Linux reads back other records than it wrote: {string.Join(' ', verifyReply)}");
        Assert.Equal(stopped.Count.ToString(CultureInfo.InvariantCulture), verify["count"]);
        log.WriteLine($"migration check done: {records.Max} records on the destination's disk");
    }
}
