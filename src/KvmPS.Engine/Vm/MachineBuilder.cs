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

    /// <summary>As <see cref="BuildHardware"/>, the devices without these host resources: a live upgrade's destination, which is handed them (<see cref="MachineConfig.Deferred"/>).</summary>
    public VirtualMachine BuildHardwareDeferring(Devices.Config.HandedOverResources deferred) => VirtualMachine.BuildHardware(Config with { Deferred = deferred }, serialOutput);

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
    /// Hardware, then a snapshot: guest RAM from its memory files (the full base mapped or copied, then the pages of
    /// each diff of the chain), then every state record. The configuration must be the one the snapshot was taken
    /// with (its config.json); a mismatch is refused. Dirty tracking starts at the restored state, so the next diff's
    /// parent is this snapshot.
    /// </summary>
    public VirtualMachine Restore(LoadedSnapshot snapshot, RestoreMemoryMode memoryMode)
    {
        var machine = VirtualMachine.BuildHardware(Config, serialOutput, logDirtyPages: true);
        Diagnostics.StartupTimeline.Mark("hardware");
        try
        {
            var layers = snapshot.MemoryLayers.Count > 0 ? snapshot.MemoryLayers : [new SnapshotMemoryLayer(snapshot.Directory, snapshot.MemoryPath, snapshot.MemoryFileBytes, null)];
            var full = layers[0];
            using (var file = SnapshotDirectory.OpenMemory(full.MemoryPath))
                machine.RestoreMemory(file, full.MemoryPath, full.MemoryFileBytes, memoryMode);
            // Mapped: oldest diff first, long runs mapped from the diff's file, so newer diffs win. Copied: newest diff
            // first, each page copied once, from the newest snapshot that holds it.
            var done = new GuestPageBitmap(machine.Memory.PageCount);
            for (int n = 1; n < layers.Count; n++)
            {
                var diff = layers[memoryMode == RestoreMemoryMode.Private ? n : layers.Count - n];
                if ((ulong)diff.MemoryFileBytes != machine.Memory.SizeBytes)
                    throw new SnapshotException(diff.MemoryPath, $"the memory file has {diff.MemoryFileBytes} bytes but the machine has {machine.Memory.SizeBytes} bytes of RAM");
                using var file = SnapshotDirectory.OpenMemory(diff.MemoryPath);
                if (memoryMode == RestoreMemoryMode.Private) GuestMemoryFile.OverlayMapped(machine.Memory, file, diff.MemoryPath, diff.Pages!);
                else GuestMemoryFile.Overlay(machine.Memory, file, diff.MemoryPath, diff.Pages!, done);
            }
            // From here on every change to guest RAM counts as dirty (a device restoring its state may write some).
            machine.Memory.StartDirtyTracking();
            Diagnostics.StartupTimeline.Mark("memory");
            try { machine.RestoreState(snapshot.Records); }
            catch (StateFormatException e) { throw new SnapshotException(Path.Combine(snapshot.Directory, SnapshotDirectory.StateFileName), e.Message, e); }
            machine.SnapshotBaseline = new SnapshotBaseline(snapshot.Directory, snapshot.StateCrc, machine.Memory.PageCount);
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
            throw new BootImageException(path, $"cannot read the {what} image: {IoErrorText.Describe(e, path)}", e);
        }
    }
}
