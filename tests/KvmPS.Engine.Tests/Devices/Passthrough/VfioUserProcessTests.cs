using KvmPS.Engine.Tests.Support;
using Xunit;

namespace KvmPS.Engine.Tests.Devices.Passthrough;

/// <summary>kvmps-vmm with <c>--device vfio-user,socket=PATH</c> against a scripted server: start-up refusal, describe, a server that dies.</summary>
public class VfioUserProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public void AServerOfAnotherVersionStopsTheVmmFromStartingNamingTheSocket()
    {
        using var peer = new FakeVfioUserPeer(p => p.Reply(p.Read(), FakeVfioUserPeer.VersionPayload(1, 0, "{}")));
        var (code, stdout, stderr) = VmmProcess.Run(Timeout, "--device", $"vfio-user,socket={peer.SocketPath}", "--serial", "none");
        Assert.NotEqual(0, code);
        Assert.Contains(peer.SocketPath, stderr);
        Assert.Contains("speaks vfio-user 1.0", stderr);
    }

    [Fact]
    public void AMissingServerStopsTheVmmFromStartingNamingTheSocket()
    {
        using var dir = new TempDir();
        string sock = dir.File("none.sock");
        var (code, _, stderr) = VmmProcess.Run(Timeout, "--device", $"vfio-user,socket={sock}", "--serial", "none");
        Assert.NotEqual(0, code);
        Assert.Contains(sock, stderr);
    }

    [Fact]
    public void TheDeviceIsDescribedAndTheVmOutlivesItsServer()
    {
        using var dir = new TempDir();
        string control = dir.File("c.sock");
        using var peer = new FakeVfioUserPeer(p => { p.Handshake(); p.Serve(FakeVfioUserPeer.MinimalConfig()); });
        using var vmm = new VmmProcess("--device", $"vfio-user,socket={peer.SocketPath}", "--control-socket", control, "--serial", "none");
        using var client = new ControlClient(control, Timeout);
        var device = Assert.Single(client.Ok("describe").GetProperty("devices").EnumerateArray());
        Assert.Equal("vfio-user", device.GetProperty("type").GetString());
        Assert.Equal(peer.SocketPath, device.GetProperty("socket").GetString());
        Assert.Contains(peer.Received, m => m.Command == 2 && m.Fds.Count == 1); // DMA_MAP with guest RAM's memfd
        peer.Close(); // the server dies
        Thread.Sleep(500);
        Assert.False(vmm.HasExited, $"stderr:\n{vmm.Stderr}");
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        var snapshot = client.Request("snapshot.create", $"\"path\": \"{dir.File("snap")}\"");
        Assert.False(snapshot.GetProperty("ok").GetBoolean());
        Assert.Contains("no migration support", snapshot.ToString());
    }
}
