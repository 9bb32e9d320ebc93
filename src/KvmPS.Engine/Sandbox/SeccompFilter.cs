using KvmPS.Interop;

namespace KvmPS.Sandbox;

/// <summary>One allowed syscall: always, or only when an argument's low 32 bits equal one of some values (an ioctl
/// request number), or have a bit set (clone's CLONE_THREAD).</summary>
/// <param name="Name">The x86-64 syscall name (<see cref="Syscalls"/>).</param>
/// <param name="Argument">The argument checked (0-5), or -1 for none.</param>
/// <param name="Values">With <see cref="Argument"/>: the values allowed.</param>
/// <param name="RequiredBits">With <see cref="Argument"/>: the one bit that must be set (instead of <see cref="Values"/>).</param>
/// <param name="Mask">With <see cref="Values"/>: the argument is ANDed with this before it is compared (0xff00 compares an ioctl's type byte).</param>
public sealed record SyscallRule(string Name, int Argument = -1, IReadOnlyList<uint>? Values = null, uint RequiredBits = 0, uint Mask = 0xffffffff)
{
    public static implicit operator SyscallRule(string name) => new(name);
}

/// <summary>
/// A seccomp classic-BPF program built from an allowlist, in the manner of Firecracker's seccompiler: the
/// architecture is checked first (anything but x86-64, or an x32 syscall number, is refused), then each allowed syscall
/// in the order given (put the hot ones first: the program is a linear scan), then the default action for everything
/// else. An argument rule compares the argument's low 32 bits, which is what the kernel reads for an ioctl request.
/// </summary>
public sealed class SeccompFilter
{
    // BPF opcodes (linux/bpf_common.h).
    private const ushort BPF_LD = 0x00, BPF_ALU = 0x04, BPF_AND = 0x50, BPF_JMP = 0x05, BPF_RET = 0x06, BPF_W = 0x00, BPF_ABS = 0x20, BPF_JEQ = 0x10, BPF_JGE = 0x30, BPF_JSET = 0x40, BPF_K = 0x00;
    private const uint X32SyscallBit = 0x40000000;
    private const int MaxInstructions = 4096; // BPF_MAXINSNS

    private readonly SockFilter[] _program;

    /// <summary>The program's instructions (for tests and for the kernel).</summary>
    internal IReadOnlyList<SockFilter> Program => _program;

    /// <summary>How many instructions the program has.</summary>
    public int Length => _program.Length;

    /// <summary>The syscall numbers allowed without an argument check.</summary>
    public IReadOnlySet<int> Allowed { get; }

    /// <param name="rules">Allowed syscalls; a name given twice keeps its first rule.</param>
    /// <param name="refused">What every other syscall gets (<see cref="Libc.SECCOMP_RET_TRAP"/>, or an errno action).</param>
    /// <param name="errnoFor">Syscalls answered with an errno instead of <paramref name="refused"/> (clone3 → ENOSYS, so glibc falls back to clone, whose flags can be checked).</param>
    public SeccompFilter(IEnumerable<SyscallRule> rules, uint refused = Libc.SECCOMP_RET_TRAP, IReadOnlyDictionary<string, int>? errnoFor = null)
    {
        var code = new List<SockFilter>
        {
            Load(Libc.SeccompDataArch),
            Jump(BPF_JEQ, Libc.AUDIT_ARCH_X86_64, 1, 0),
            Return(Libc.SECCOMP_RET_KILL_PROCESS),
            Load(Libc.SeccompDataNr),
            Jump(BPF_JGE, X32SyscallBit, 0, 1),
            Return(Libc.SECCOMP_RET_KILL_PROCESS),
        };
        var seen = new HashSet<int>();
        var plain = new HashSet<int>();
        foreach (var rule in rules)
        {
            int nr = Syscalls.Number(rule.Name);
            if (!seen.Add(nr)) continue;
            if (rule.Argument < 0)
            {
                plain.Add(nr);
                code.Add(Jump(BPF_JEQ, (uint)nr, 0, 1));
                code.Add(Return(Libc.SECCOMP_RET_ALLOW));
                continue;
            }
            if (rule.Argument > 5) throw new ArgumentOutOfRangeException(nameof(rules), $"{rule.Name}: argument {rule.Argument} (0-5)");
            // jeq nr ? block : skip block; block = ld arg; (jeq v → allow)*; ret refused; ret allow; then reload nr.
            var block = new List<SockFilter> { Load(Libc.SeccompDataArgs + 8 * rule.Argument) };
            if (rule.Values is { Count: > 0 } values)
            {
                if (rule.Mask != 0xffffffff) block.Add(new SockFilter((ushort)(BPF_ALU | BPF_AND | BPF_K), 0, 0, rule.Mask));
                for (int i = 0; i < values.Count; i++) block.Add(Jump(BPF_JEQ, values[i], (byte)(values.Count - i), 0));
            }
            else
            {
                block.Add(Jump(BPF_JSET, rule.RequiredBits, 1, 0)); // JSET is "any bit": one bit per rule is what is needed
                if (System.Numerics.BitOperations.PopCount(rule.RequiredBits) != 1) throw new ArgumentException($"{rule.Name}: RequiredBits must be one bit", nameof(rules));
            }
            block.Add(Return(refused));
            block.Add(Return(Libc.SECCOMP_RET_ALLOW));
            if (block.Count > 255) throw new ArgumentException($"{rule.Name}: too many values for one rule", nameof(rules));
            code.Add(Jump(BPF_JEQ, (uint)nr, 0, (byte)block.Count));
            code.AddRange(block);
            // The block ends in returns, so the next check starts after it with nr still to reload.
            code.Add(Load(Libc.SeccompDataNr));
            // The jump above skips the block and lands here, where reloading nr does no harm.
        }
        foreach (var (name, errno) in errnoFor ?? new Dictionary<string, int>())
        {
            code.Add(Jump(BPF_JEQ, (uint)Syscalls.Number(name), 0, 1));
            code.Add(Return(Libc.SECCOMP_RET_ERRNO | ((uint)errno & Libc.SECCOMP_RET_DATA)));
        }
        code.Add(Return(refused));
        if (code.Count > MaxInstructions) throw new ArgumentException($"the filter has {code.Count} instructions; the kernel takes at most {MaxInstructions}", nameof(rules));
        _program = [.. code];
        Allowed = plain;
    }

    private static SockFilter Load(int offset) => new((ushort)(BPF_LD | BPF_W | BPF_ABS), 0, 0, (uint)offset);
    private static SockFilter Jump(ushort op, uint k, byte jt, byte jf) => new((ushort)(BPF_JMP | op | BPF_K), jt, jf, k);
    private static SockFilter Return(uint action) => new((ushort)(BPF_RET | BPF_K), 0, 0, action);

    /// <summary>
    /// What the program returns for a syscall with these arguments on x86-64, by interpreting it (tests check the
    /// program without installing it).
    /// </summary>
    internal uint Evaluate(int nr, ReadOnlySpan<ulong> args, uint arch = Libc.AUDIT_ARCH_X86_64)
    {
        uint a = 0;
        for (int pc = 0; pc < _program.Length; pc++)
        {
            var i = _program[pc];
            switch (i.code)
            {
                case BPF_LD | BPF_W | BPF_ABS:
                    a = (int)i.k switch
                    {
                        Libc.SeccompDataNr => (uint)nr,
                        Libc.SeccompDataArch => arch,
                        int k when k >= Libc.SeccompDataArgs && k < Libc.SeccompDataArgs + 48 && (k - Libc.SeccompDataArgs) % 8 == 0 => (uint)((k - Libc.SeccompDataArgs) / 8 < args.Length ? args[(k - Libc.SeccompDataArgs) / 8] : 0),
                        _ => throw new InvalidOperationException($"load of offset {i.k}"),
                    };
                    break;
                case BPF_ALU | BPF_AND | BPF_K: a &= i.k; break;
                case BPF_JMP | BPF_JEQ | BPF_K: pc += a == i.k ? i.jt : i.jf; break;
                case BPF_JMP | BPF_JGE | BPF_K: pc += a >= i.k ? i.jt : i.jf; break;
                case BPF_JMP | BPF_JSET | BPF_K: pc += (a & i.k) != 0 ? i.jt : i.jf; break;
                case BPF_RET | BPF_K: return i.k;
                default: throw new InvalidOperationException($"opcode 0x{i.code:x}");
            }
        }
        throw new InvalidOperationException("the program ran off its end");
    }

    /// <summary>
    /// Installs the program on the calling thread (no_new_privs must be set), or with <paramref name="allThreads"/> on
    /// every thread of the process (TSYNC). Returns 0, or an errno (negative: TSYNC failed on that thread id).
    /// </summary>
    internal unsafe int InstallOnThisThread(bool allThreads = false)
    {
        fixed (SockFilter* filter = _program)
        {
            var program = new SockFprog { len = (ushort)_program.Length, filter = filter };
            int rc = Libc.SeccompSetFilter(&program, allThreads ? Libc.SECCOMP_FILTER_FLAG_TSYNC : 0);
            return rc == 0 ? 0 : rc > 0 ? -rc : System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
        }
    }
}
