namespace KvmPS.Vm;

/// <summary>Lifecycle of one VM inside its host process.</summary>
public enum VmState { Created, Running, Paused, Stopped, Crashed, Migrated }

/// <summary>Why a VM stopped running.</summary>
public enum VmExitKind { PowerOff, Reset, DebugExit, Stopped, Crashed, Migrated }

/// <summary>Registers of a vCPU at the moment it failed.</summary>
public sealed record CpuSnapshot(int VcpuId, ulong Rip, ulong Rsp, ulong Rflags, ulong Rax, ulong Rbx, ulong Rcx, ulong Rdx, ulong Rsi, ulong Rdi, ulong Rbp,
    ulong Cr0, ulong Cr2, ulong Cr3, ulong Cr4, ulong Efer, ushort Cs, ulong CsBase);

/// <summary>How the VM ended: the kind, a human reason, the guest's debug-exit value and, on a crash, the failing CPU's registers.</summary>
public sealed record VmExit(VmExitKind Kind, string Reason, int? DebugExitValue = null, CpuSnapshot? Cpu = null);
