using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>Issue 17 items 2 and 3 with the real kvmps-vmm: a planted serial.log link, the console log's bound.</summary>
[Collection(VmmCollection.Name)]
public sealed class ConfinementVmmTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly TempDirectory _outside = new();

    public ConfinementVmmTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose()
    {
        _sandbox.Dispose();
        _outside.Dispose();
    }

    [Fact]
    public void A_planted_serial_log_link_fails_the_start_and_nothing_is_written_through_it()
    {
        _sandbox.Manager.New(_sandbox.GuestWithCmdline("lnk", "kvmps.run=info,exit 0"));
        var victim = Path.Combine(_outside.Path, "root-only");
        File.WriteAllText(victim, "secret\n");
        File.CreateSymbolicLink(_sandbox.Store.SerialLogPath("lnk"), victim);

        var error = Assert.ThrowsAny<Exception>(() => _sandbox.Manager.Start("lnk"));
        Assert.Contains("symbolic link", error.Message);
        Assert.Contains(_sandbox.Store.SerialLogPath("lnk"), error.Message);
        Assert.Equal("secret\n", File.ReadAllText(victim));
    }

    [Fact]
    public void The_console_log_is_bounded_by_the_vms_log_settings()
    {
        // About 60 info reports (a few hundred bytes each) against a 4 KiB limit with one kept file.
        var cmdline = "kvmps.run=" + string.Join(",", Enumerable.Repeat("info", 60)) + ",exit 0";
        _sandbox.Manager.New(_sandbox.GuestWithCmdline("chatty", cmdline) with { LogMaxBytes = 4096, LogFileCount = 1 });
        _sandbox.Manager.Start("chatty");
        LifecycleSandbox.WaitFor(() => _sandbox.Manager.Get("chatty"), vm => vm.State == VmState.Off, "the guest's debug exit", 60);

        var serial = _sandbox.Store.SerialLogPath("chatty");
        Assert.True(File.Exists(serial + ".1"), "the log was never rotated");
        Assert.False(File.Exists(serial + ".2"), "more files kept than LogFileCount");
        Assert.InRange(new FileInfo(serial).Length, 0, 4096);
        Assert.InRange(new FileInfo(serial + ".1").Length, 1, 4096);
    }
}
