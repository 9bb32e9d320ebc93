using KvmPS.Engine.Tests.Support;

namespace KvmPS.Engine.Tests.Acpi;

/// <summary>The <c>vcpu.set</c> control request on a kvmps-vmm process running the built-in guest.</summary>
public class VcpuSetRequestTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public void AddsVcpusWithinTheMaximumAndRefusesBeyondItWithTheVmUnchanged()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--vcpus", "1", "--max-vcpus", "4", "--control-socket", sock, "--serial", "none");
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);

        var set = client.Ok("vcpu.set", "\"count\": 3");
        Assert.Equal(3, set.GetProperty("vcpus").GetInt32());
        Assert.Equal(4, set.GetProperty("max_vcpus").GetInt32());
        Assert.Equal(3, client.Ok("status").GetProperty("vcpus").GetArrayLength());

        foreach (int bad in new[] { 5, 0 })
        {
            var refused = client.Request("vcpu.set", $"\"count\": {bad}");
            Assert.False(refused.GetProperty("ok").GetBoolean());
            Assert.Equal("InvalidArgument", refused.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("maximum 4", refused.GetProperty("error").GetProperty("message").GetString());
        }
        var missing = client.Request("vcpu.set");
        Assert.Equal("InvalidArgument", missing.GetProperty("error").GetProperty("code").GetString());

        var status = client.Ok("status");
        Assert.Equal("Running", status.GetProperty("state").GetString());
        Assert.Equal(3, status.GetProperty("vcpus").GetArrayLength());
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(0, vmm.WaitForExit(Timeout));
    }
}
