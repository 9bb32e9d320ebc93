using KvmPS.Management.Lifecycle;
using Xunit;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// A VMM its sandbox ended (exit 18) leaves its socket behind like any crash; the VM shows Crashed, and the reason
/// names the thread and the syscall from the line the VMM wrote to vmm.log (the engine's SandboxProcessTests check
/// that the real VMM writes it).
/// </summary>
public class SandboxCrashReasonTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvmps-sbx").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void TheViolationOfThisPidIsTheReason()
    {
        string log = Path.Combine(_dir, "vmm.log");
        File.WriteAllText(log, string.Join('\n',
            "kvmps-vmm: sandbox violation: pid 111: the Vcpu thread 'vcpu0' (tid 112) called ptrace (101), which its seccomp filter forbids; the VMM exits (status 18)",
            "kvmps-vmm: device: virtio-rng",
            "kvmps-vmm: sandbox violation: pid 4242: the DeviceIo thread 'kvmps-io' (tid 4250) called getppid (110), which its seccomp filter forbids; the VMM exits (status 18)",
            ""));
        Assert.Equal("VMM process 4242 was ended by its sandbox: the DeviceIo thread 'kvmps-io' (tid 4250) called getppid (110), which its seccomp filter forbids; the VMM exits (status 18)",
            VmRuntimeProbe.CrashReason(log, 4242));
        // An earlier run's violation is not this one's.
        Assert.Equal("VMM process 999 died unexpectedly", VmRuntimeProbe.CrashReason(log, 999));
        Assert.Equal("VMM process 5 died unexpectedly", VmRuntimeProbe.CrashReason(Path.Combine(_dir, "missing.log"), 5));
    }
}
