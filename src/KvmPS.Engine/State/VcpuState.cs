using System.Runtime.InteropServices;
using KvmPS.Interop;
using static KvmPS.Interop.KvmConstants;

namespace KvmPS.State;

/// <summary>
/// Everything KVM holds for one vCPU: registers, special registers, extended (XSAVE) state, XCRs, the local APIC,
/// every MSR KVM lets userspace read, pending events, debug registers and the multiprocessing state. The TSC travels
/// as MSR IA32_TSC (this host has no TSC scaling, so the guest's TSC continues from its saved value).
/// </summary>
public sealed class VcpuState
{
    public const ushort Version = 1;
    private const int MaxXsaveBytes = 1 << 20;
    private const int MaxMsrs = 4096;

    public kvm_regs Regs;
    public kvm_sregs Sregs;
    public byte[] Xsave = [];
    public kvm_xcrs Xcrs;
    public kvm_lapic_state Lapic;
    public kvm_msr_entry[] Msrs = [];
    public kvm_vcpu_events Events;
    public kvm_debugregs DebugRegs;
    public uint MpState;

    /// <summary>The raw bytes of a kernel struct, for saving it whole.</summary>
    internal static Span<byte> BytesOf<T>(ref T value) where T : unmanaged => MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1));

    /// <summary>Reads the state of a vCPU that is not running (parked, its pending I/O completed).</summary>
    public static VcpuState Capture(KvmVcpuHandle vcpu, ReadOnlySpan<uint> msrIndices, int xsaveBytes)
    {
        // KVM_GET_MP_STATE first: it lets the LAPIC accept pending INIT/SIPI, which can change the other state.
        var state = new VcpuState { MpState = Kvm.GetMpState(vcpu) };
        state.Regs = Kvm.GetRegs(vcpu);
        state.Sregs = Kvm.GetSregs(vcpu);
        state.Xsave = new byte[xsaveBytes];
        Kvm.GetXsave(vcpu, state.Xsave);
        state.Xcrs = Kvm.GetXcrs(vcpu);
        state.DebugRegs = Kvm.GetDebugRegs(vcpu);
        Kvm.GetLapic(vcpu, out state.Lapic);
        var msrs = new kvm_msr_entry[msrIndices.Length];
        for (int i = 0; i < msrs.Length; i++) msrs[i].index = msrIndices[i];
        int read = Kvm.TryGetMsrs(vcpu, msrs);
        if (read != msrs.Length) throw new InvalidOperationException($"KVM_GET_MSRS read {read} of {msrs.Length} MSRs (stopped at MSR 0x{msrs[read].index:x}).");
        state.Msrs = msrs;
        state.Events = Kvm.GetVcpuEvents(vcpu);
        return state;
    }

    /// <summary>
    /// Loads the state into a vCPU that has never run. Order matters: special registers before registers (mode and
    /// segment state first), XSAVE and XCRs, the LAPIC after SREGS (writing APIC_BASE resets it), MSRs after the LAPIC
    /// (TSC deadline), MP state, and the pending events last.
    /// </summary>
    public void Apply(KvmVcpuHandle vcpu, int xsaveBytes)
    {
        Kvm.SetSregs(vcpu, Sregs);
        Kvm.SetRegs(vcpu, Regs);
        if (Xsave.Length > xsaveBytes) throw new InvalidOperationException($"the saved XSAVE area has {Xsave.Length} bytes but this host's KVM takes {xsaveBytes}");
        var xsave = new byte[xsaveBytes];
        Xsave.CopyTo(xsave, 0);
        Kvm.SetXsave(vcpu, xsave);
        Kvm.SetXcrs(vcpu, Xcrs);
        Kvm.SetDebugRegs(vcpu, DebugRegs);
        Kvm.SetLapic(vcpu, Lapic);
        int set = Kvm.SetMsrs(vcpu, Msrs);
        if (set != Msrs.Length) throw new InvalidOperationException($"KVM_SET_MSRS accepted {set} of {Msrs.Length} MSRs (rejected MSR 0x{Msrs[set].index:x})");
        Kvm.SetMpState(vcpu, MpState);
        // Restore what was pending (NMI, SIPI vector, interrupt shadow, SMM) as it was.
        var events = Events;
        events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
        Kvm.SetVcpuEvents(vcpu, events);
    }

    public void Write(StateWriter w)
    {
        w.WriteFixed(BytesOf(ref Regs));
        w.WriteFixed(BytesOf(ref Sregs));
        w.WriteBytes(Xsave);
        w.WriteFixed(BytesOf(ref Xcrs));
        w.WriteFixed(BytesOf(ref Lapic));
        w.WriteUInt32((uint)Msrs.Length);
        foreach (var m in Msrs) { w.WriteUInt32(m.index); w.WriteUInt64(m.data); }
        w.WriteFixed(BytesOf(ref Events));
        w.WriteFixed(BytesOf(ref DebugRegs));
        w.WriteUInt32(MpState);
    }

    public static VcpuState Read(StateReader r, ushort version)
    {
        if (version != Version) throw r.Fail($"version {version} is not known to this build (it reads version {Version})");
        var s = new VcpuState();
        r.ReadFixed(BytesOf(ref s.Regs));
        r.ReadFixed(BytesOf(ref s.Sregs));
        s.Xsave = r.ReadBytes(MaxXsaveBytes);
        if (s.Xsave.Length < KVM_XSAVE_LEGACY_SIZE) throw r.Fail($"the XSAVE area has {s.Xsave.Length} bytes, fewer than {KVM_XSAVE_LEGACY_SIZE}");
        r.ReadFixed(BytesOf(ref s.Xcrs));
        if (s.Xcrs.nr_xcrs > KVM_MAX_XCRS) throw r.Fail($"{s.Xcrs.nr_xcrs} XCRs exceed the maximum of {KVM_MAX_XCRS}");
        r.ReadFixed(BytesOf(ref s.Lapic));
        uint count = r.ReadUInt32();
        if (count > MaxMsrs) throw r.Fail($"{count} MSRs exceed the limit of {MaxMsrs}");
        s.Msrs = new kvm_msr_entry[count];
        for (int i = 0; i < count; i++) { s.Msrs[i].index = r.ReadUInt32(); s.Msrs[i].data = r.ReadUInt64(); }
        r.ReadFixed(BytesOf(ref s.Events));
        r.ReadFixed(BytesOf(ref s.DebugRegs));
        s.MpState = r.ReadUInt32();
        if (s.MpState > 10) throw r.Fail($"MP state {s.MpState} is not a KVM_MP_STATE value");
        r.EnsureEnd();
        return s;
    }

    /// <summary>
    /// The MSRs of KVM_GET_MSR_INDEX_LIST that KVM_GET_MSRS accepts on this vCPU (the list names some that depend on
    /// CPUID features the guest does not have).
    /// </summary>
    public static uint[] ReadableMsrs(KvmSystemHandle system, KvmVcpuHandle vcpu)
    {
        var all = Kvm.GetMsrIndexList(system);
        var readable = new List<uint>(all.Length);
        int start = 0;
        while (start < all.Length)
        {
            var probe = new kvm_msr_entry[all.Length - start];
            for (int i = 0; i < probe.Length; i++) probe[i].index = all[start + i];
            int read = Kvm.TryGetMsrs(vcpu, probe);
            for (int i = 0; i < read; i++) readable.Add(all[start + i]);
            start += read + 1; // skip the one KVM refused
        }
        return readable.ToArray();
    }
}
