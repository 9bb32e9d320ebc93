using System.Net.Sockets;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using Xunit;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Migration;

public partial class MigrationProcessTests
{
    /// <summary>
    /// While a migration is under way the machine's shape must not change under it: a vCPU, memory block or device added
    /// or removed mid-way would not match the identity the destination built from, or would miss the records. Each
    /// request is refused (InvalidState, saying why), nothing changes, and after the migration ends they work again.
    /// </summary>
    [Fact]
    public void ShapeChangesAndSnapshotsAreRefusedWhileAMigrationIsUnderWay()
    {
        // A destination that accepts and then says nothing: the migration stays in setup (waiting for Ready).
        using var dir = new TempDir();
        string path = dir.File("silent.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        TestJail.GiveToJailUser(path); // a jailed source connects as the jail's user, as to a receiving VMM's socket
        using var source = new Source(dir, 1, workMiB: 4, extra: ["--max-vcpus", "2", "--max-memory", "512M"]);
        source.Control.Ok("migrate", $"\"uri\": \"unix:{path}\"");
        using var peer = listener.Accept();
        Assert.Equal(MigrationPhases.Setup, source.Control.Ok("migrate.status").GetProperty("phase").GetString());
        int devices = source.Control.Ok("describe").GetProperty("devices").GetArrayLength();

        string disk = dir.File("hot.raw");
        File.WriteAllBytes(disk, new byte[1 << 20]);
        var refused = new (string Request, string Args)[]
        {
            (VcpuSetRequest.Name, "\"count\": 2"),
            (MemorySetRequest.Name, "\"bytes\": 536870912"),
            (DeviceAddRequest.Name, $"\"device\": {{\"type\": \"block\", \"path\": \"{disk}\"}}"),
            (DeviceRemoveRequest.Name, "\"pci\": \"00:05.0\""),
            (SnapshotCreateRequest.Name, $"\"path\": \"{dir.File("snap")}\", \"disks\": \"ignore\""),
        };
        foreach (var (request, args) in refused)
        {
            var reply = source.Control.Request(request, args);
            Assert.False(reply.GetProperty("ok").GetBoolean(), $"{request} must be refused during the migration");
            Assert.Equal("InvalidState", reply.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains($"'{request}' cannot run during a migration", reply.GetProperty("error").GetProperty("message").GetString());
        }
        var status = source.Control.Ok("status");
        Assert.Equal(1, status.GetProperty("vcpus").GetArrayLength());
        Assert.Equal(devices, source.Control.Ok("describe").GetProperty("devices").GetArrayLength());
        Assert.False(Directory.Exists(dir.File("snap")));

        Assert.Equal(MigrationPhases.Cancelled, source.Control.Ok("migrate.cancel").GetProperty("phase").GetString());
        source.AssertStillRunning();
        // Once the migration has ended, the same requests are the VMM's to judge again.
        Assert.True(source.Control.Request(VcpuSetRequest.Name, "\"count\": 2").GetProperty("ok").GetBoolean());
        Assert.True(source.Control.Request(MemorySetRequest.Name, "\"bytes\": 536870912").GetProperty("ok").GetBoolean());
    }
}
