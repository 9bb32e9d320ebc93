using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// A VM that cannot start says which file and why, from the VMM's own error line (issue 17: a disk-lock refusal was
/// explained as the kernel or initrd being unusable; a missing kernel gave a bare resource key).
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class StartFailureTextTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly VmManager _manager;
    private readonly TempDirectory _dir = new();

    public StartFailureTextTests(VmmFixture fixture)
    {
        _sandbox = new LifecycleSandbox(fixture);
        _manager = _sandbox.Manager;
    }

    public void Dispose()
    {
        _sandbox.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public void A_disk_locked_by_another_running_vm_is_named_with_the_lock_and_that_vm()
    {
        var disk = Path.Combine(_dir.Path, "shared.raw");
        File.WriteAllBytes(disk, new byte[1 << 20]);
        var shared = new[] { new DiskDefinition(disk, DiskFormat.Raw) };
        _manager.New(TestDefinitions.Minimal("owner") with { Disks = shared });
        _manager.New(TestDefinitions.Minimal("second") with { Disks = shared });
        _manager.Start("owner");

        var e = Assert.Throws<VmmLaunchException>(() => _manager.Start("second"));

        Assert.Equal(6, e.ExitCode);
        Assert.StartsWith("VM 'second' failed to start: ", e.Message);
        Assert.Contains(disk, e.Message);
        Assert.Contains("lock", e.Message);
        Assert.Contains("VM 'owner'", e.Message);
        Assert.DoesNotContain("kernel", e.Message);
        Assert.DoesNotContain("initrd", e.Message);
        Assert.Equal(VmState.Running, _manager.Get("owner").State);
        Assert.Equal(VmState.Off, _manager.Get("second").State);
    }

    [Fact]
    public void A_missing_kernel_is_named_in_words()
    {
        var kernel = Path.Combine(_dir.Path, "no-such-dir", "vmlinuz");
        _manager.New(TestDefinitions.Minimal("nokernel") with { Boot = new DirectKernelBoot(kernel) });

        var e = Assert.Throws<VmmLaunchException>(() => _manager.Start("nokernel"));

        Assert.Equal(6, e.ExitCode);
        Assert.Contains(kernel, e.Message);
        Assert.Contains("cannot read the kernel image: no such directory", e.Message);
        Assert.DoesNotContain("IO_", e.Message);
        Assert.DoesNotContain("_Path", e.Message);
    }
}
