using System.Diagnostics;
using KvmPS.Engine.Tests.Boot;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using KvmPS.Vm;
using KvmPS.Vm.Boot;

namespace KvmPS.Engine.Tests.Vm;

/// <summary>Creating a VM from bad input fails with a clear error and leaves nothing behind: no mapping, no fd, no thread.</summary>
[Collection(ProcessWideResourceCollection.Name)]
public class VirtualMachineCreationTests
{
    /// <summary>An unusual guest size, so its mappings can be told apart from everything else in the test process.</summary>
    private const ulong GuestBytes = 52UL << 20;

    /// <summary>What a VM creates: guest-RAM mappings, kvm_run mappings, KVM fds and vCPU threads.</summary>
    private static (int Mappings, int Fds, int Threads) ProcessResources()
    {
        int mappings = File.ReadLines("/proc/self/maps").Count(l =>
        {
            var range = l[..l.IndexOf(' ')].Split('-');
            ulong size = Convert.ToUInt64(range[1], 16) - Convert.ToUInt64(range[0], 16);
            return size == GuestBytes || l.Contains("kvm-vcpu");
        });
        int fds = 0;
        foreach (var fd in Directory.GetFiles("/proc/self/fd"))
        {
            try { if (new FileInfo(fd).LinkTarget is string t && (t.Contains("kvm") || t.Contains("eventfd"))) fds++; }
            catch (IOException) { }
        }
        int threads = Directory.GetDirectories("/proc/self/task").Count(t =>
        {
            try { return File.ReadAllText(Path.Combine(t, "comm")).StartsWith("vcpu"); } catch (IOException) { return false; }
        });
        return (mappings, fds, threads);
    }

    private static IEnumerable<string> KvmFdTargets() =>
        Directory.GetFiles("/proc/self/fd").Select(fd => { try { return new FileInfo(fd).LinkTarget ?? ""; } catch (IOException) { return ""; } })
            .Where(t => t.Contains("kvm") || t.Contains("eventfd"));

    private static void AssertNothingLeaks(Action<TempDir> attempt)
    {
        using var dir = new TempDir();
        try { attempt(dir); } catch { } // warm-up: first-use allocations of the runtime are not leaks
        GC.Collect(); GC.WaitForPendingFinalizers();
        var before = ProcessResources();
        for (int i = 0; i < 3; i++) { try { attempt(dir); } catch { } }
        GC.Collect(); GC.WaitForPendingFinalizers();
        var after = ProcessResources();
        Assert.True(after.Fds <= before.Fds, $"fds {before.Fds} -> {after.Fds}: {string.Join(", ", KvmFdTargets())}");
        Assert.True(after.Mappings <= before.Mappings, $"guest/kvm_run mappings {before.Mappings} -> {after.Mappings}");
        Assert.True(after.Threads <= before.Threads, $"vCPU threads {before.Threads} -> {after.Threads}");
    }

    [Fact]
    public void KernelTooLargeForMemoryFailsAfterKvmSetupAndReleasesEverything()
    {
        AssertNothingLeaks(dir =>
        {
            // A valid ELF whose segment lies beyond 16 MiB of RAM: found only after the VM fd and memory exist.
            string elf = dir.File("big.elf");
            File.WriteAllBytes(elf, KernelImages.Elf(64UL << 20, [new KernelImages.Segment(1, 64UL << 20, [0xf4], 1)]));
            var e = Assert.Throws<BootImageException>(() => VirtualMachine.Create(new MachineConfig { KernelPath = elf, MemoryBytes = GuestBytes }, _ => { }));
            Assert.Contains(elf, e.Message);
            Assert.Contains("too large for guest memory", e.Message);
        });
    }

    [Fact]
    public void MissingInitrdFailsBeforeTouchingKvm()
    {
        AssertNothingLeaks(dir =>
        {
            var e = Assert.Throws<BootImageException>(() => VirtualMachine.Create(new MachineConfig { InitrdPath = dir.File("nope.img"), MemoryBytes = GuestBytes }, _ => { }));
            Assert.Contains("nope.img", e.Message);
        });
    }

    [Fact]
    public void MissingKvmDeviceIsAClearError()
    {
        var e = Assert.Throws<KvmUnavailableException>(() => VirtualMachine.Create(new MachineConfig { KvmDevicePath = "/dev/absent-kvm" }, _ => { }));
        Assert.Equal("/dev/absent-kvm", e.DevicePath);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void StoppedVmReleasesEverything()
    {
        AssertNothingLeaks(_ =>
        {
            using var vm = VirtualMachine.Create(new MachineConfig { VcpuCount = 2, MemoryBytes = GuestBytes }, _ => { });
            vm.Start();
            vm.Stop();
            Assert.True(vm.Exited.Wait(TimeSpan.FromSeconds(30)));
            Assert.True(vm.JoinVcpus(TimeSpan.FromSeconds(30)));
        });
    }
}

/// <summary>Tests that count process-wide resources (fds, mappings, threads) run alone, after the parallel ones.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWideResourceCollection
{
    public const string Name = "process-wide resources";
}
