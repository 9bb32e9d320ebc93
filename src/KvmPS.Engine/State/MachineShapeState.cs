using KvmPS.Vm;

namespace KvmPS.State;

/// <summary>
/// Record "machine": the shape the other records assume (vCPU count, RAM size and layout). A restore into a machine
/// of another shape is refused here, before any vCPU or device record is applied.
/// </summary>
internal sealed class MachineShapeState(VirtualMachine machine) : IPersistent
{
    public string StateName => "machine";
    public ushort StateVersion => 1;

    public void SaveState(StateWriter writer)
    {
        writer.WriteUInt32((uint)machine.Vcpus.Count);
        writer.WriteUInt64(machine.Memory.SizeBytes);
        writer.WriteUInt32((uint)machine.Memory.Regions.Count);
        foreach (var r in machine.Memory.Regions) { writer.WriteUInt64(r.GuestAddress); writer.WriteUInt64(r.SizeBytes); }
    }

    public void RestoreState(StateReader reader, ushort version)
    {
        if (version != StateVersion) throw reader.Fail($"version {version} is not known to this build (it reads version {StateVersion})");
        uint vcpus = reader.ReadUInt32();
        if (vcpus != machine.Vcpus.Count) throw reader.Fail($"the snapshot has {vcpus} vCPUs, the machine {machine.Vcpus.Count}");
        ulong bytes = reader.ReadUInt64();
        if (bytes != machine.Memory.SizeBytes) throw reader.Fail($"the snapshot has {bytes} bytes of RAM, the machine {machine.Memory.SizeBytes}");
        uint regions = reader.ReadUInt32();
        if (regions != machine.Memory.Regions.Count) throw reader.Fail($"the snapshot has {regions} RAM regions, the machine {machine.Memory.Regions.Count}");
        foreach (var r in machine.Memory.Regions)
        {
            ulong gpa = reader.ReadUInt64(), size = reader.ReadUInt64();
            if (gpa != r.GuestAddress || size != r.SizeBytes) throw reader.Fail($"RAM region 0x{gpa:x}+0x{size:x} does not match the machine's 0x{r.GuestAddress:x}+0x{r.SizeBytes:x}");
        }
        reader.EnsureEnd();
    }
}
