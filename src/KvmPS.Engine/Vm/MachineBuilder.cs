using KvmPS.Devices;
using KvmPS.State;
using KvmPS.Vm.Boot;
using KvmPS.Vmm;

namespace KvmPS.Vm;

/// <summary>
/// Builds a machine in two steps: the hardware (KVM VM, memory, irqchip, PIT, buses, devices, vCPUs with CPUID, MSRs
/// and LAPIC set up), then either <see cref="Boot"/> (load the kernel or firmware and set boot registers) or
/// <see cref="Restore"/> (put a snapshot's memory and state back). Either way the vCPUs run only after
/// <see cref="VirtualMachine.Start"/>; on failure everything created is released.
/// </summary>
public sealed class MachineBuilder(MachineConfig config, ByteSink serialOutput)
{
    public MachineConfig Config { get; } = config;

    /// <summary>Only the hardware: no guest loaded, the vCPUs in KVM's reset state.</summary>
    public VirtualMachine BuildHardware() => VirtualMachine.BuildHardware(Config, serialOutput);

    /// <summary>Hardware, then the guest: the kernel (or the built-in guest) with its boot tables, or the firmware.</summary>
    public VirtualMachine Boot()
    {
        // Read the images first: a bad path fails before any KVM resource exists.
        byte[] kernelImage = Config.FirmwarePath is not null ? [] : Config.KernelPath is null ? BuiltInGuest.Image() : ReadImage(Config.KernelPath, "kernel");
        if (Config.InitrdPath is not null && !File.Exists(Config.InitrdPath))
            throw new BootImageException(Config.InitrdPath, "the initrd does not exist.");
        var machine = BuildHardware();
        try
        {
            machine.LoadGuest(kernelImage);
            return machine;
        }
        catch
        {
            machine.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Hardware, then a snapshot: guest RAM from its memory file (mapped or copied), then every state record. The
    /// configuration must be the one the snapshot was taken with (its config.json); a mismatch is refused.
    /// </summary>
    public VirtualMachine Restore(LoadedSnapshot snapshot, RestoreMemoryMode memoryMode)
    {
        var machine = BuildHardware();
        try
        {
            using (var file = SnapshotDirectory.OpenMemory(snapshot))
                machine.RestoreMemory(file, snapshot.MemoryPath, snapshot.MemoryFileBytes, memoryMode);
            try { machine.RestoreState(snapshot.Records); }
            catch (StateFormatException e) { throw new SnapshotException(Path.Combine(snapshot.Directory, SnapshotDirectory.StateFileName), e.Message, e); }
            return machine;
        }
        catch
        {
            machine.Dispose();
            throw;
        }
    }

    private static byte[] ReadImage(string path, string what)
    {
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BootImageException(path, $"cannot read the {what} image: {IoErrorText.Describe(e)}", e);
        }
    }
}
