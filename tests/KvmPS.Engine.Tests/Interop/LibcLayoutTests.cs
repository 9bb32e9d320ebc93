using System.Runtime.InteropServices;
using System.Text;
using KvmPS.Engine.Tests.Support;
using KvmPS.Interop;
using Xunit;

namespace KvmPS.Engine.Tests.Interop;

/// <summary>
/// The libc structs and constants of the shared KvmPS.Interop assembly (used by engine, management and storage),
/// checked against glibc's and Linux's headers by a compiled C program, as KvmLayoutTests does for &lt;linux/kvm.h&gt;.
/// </summary>
public class LibcLayoutTests
{
    // (C# type, C type, fields as (C# field, C member))
    private static readonly (Type Type, string CType, (string Cs, string C)[] Fields)[] Structs =
    [
        (typeof(Libc.SigAction), "struct sigaction", [("sa_mask", "sa_mask"), ("sa_flags", "sa_flags"), ("sa_restorer", "sa_restorer")]),
        (typeof(Epoll.EpollEvent), "struct epoll_event", [("events", "events"), ("data", "data")]),
        (typeof(Tun.IfReq), "struct ifreq", [("ifr_flags", "ifr_flags"), ("ifr_ifindex", "ifr_ifindex"), ("ifr_mtu", "ifr_mtu")]),
        (typeof(Flock), "struct flock", [("l_type", "l_type"), ("l_whence", "l_whence"), ("l_start", "l_start"), ("l_len", "l_len"), ("l_pid", "l_pid")]),
        (typeof(FileStatus), "struct stat", [("st_dev", "st_dev"), ("st_ino", "st_ino"), ("st_nlink", "st_nlink"), ("st_mode", "st_mode"), ("st_uid", "st_uid"),
            ("st_gid", "st_gid"), ("st_rdev", "st_rdev"), ("st_size", "st_size"), ("st_blksize", "st_blksize"), ("st_blocks", "st_blocks"), ("st_times", "st_atim")]),
        (typeof(SockFilter), "struct sock_filter", [("code", "code"), ("jt", "jt"), ("jf", "jf"), ("k", "k")]),
        (typeof(SockFprog), "struct sock_fprog", [("len", "len"), ("filter", "filter")]),
        (typeof(Libc.RLimit), "struct rlimit", [("rlim_cur", "rlim_cur"), ("rlim_max", "rlim_max")]),
        (typeof(Libc.PollFd), "struct pollfd", [("fd", "fd"), ("events", "events"), ("revents", "revents")]),
        (typeof(Libc.ElfPhdr), "Elf64_Phdr", [("p_type", "p_type"), ("p_flags", "p_flags"), ("p_offset", "p_offset"), ("p_vaddr", "p_vaddr"),
            ("p_paddr", "p_paddr"), ("p_filesz", "p_filesz"), ("p_memsz", "p_memsz"), ("p_align", "p_align")]),
    ];

    private static readonly (string Name, long Value)[] Constants =
    [
        ("O_RDWR", Libc.O_RDWR), ("O_CREAT", Libc.O_CREAT), ("O_NONBLOCK", Libc.O_NONBLOCK), ("O_CLOEXEC", Libc.O_CLOEXEC),
        ("LOCK_EX", Libc.LOCK_EX), ("LOCK_NB", Libc.LOCK_NB), ("LOCK_UN", Libc.LOCK_UN),
        ("F_OFD_GETLK", Libc.F_OFD_GETLK), ("F_OFD_SETLK", Libc.F_OFD_SETLK), ("F_RDLCK", Libc.F_RDLCK), ("F_WRLCK", Libc.F_WRLCK), ("F_UNLCK", Libc.F_UNLCK),
        ("FALLOC_FL_KEEP_SIZE", Libc.FALLOC_FL_KEEP_SIZE), ("FALLOC_FL_PUNCH_HOLE", Libc.FALLOC_FL_PUNCH_HOLE), ("FALLOC_FL_ZERO_RANGE", Libc.FALLOC_FL_ZERO_RANGE),
        ("EFD_CLOEXEC", Libc.EFD_CLOEXEC), ("EFD_NONBLOCK", Libc.EFD_NONBLOCK), ("POLLIN", Libc.POLLIN), ("POLLERR", Libc.POLLERR), ("POLLHUP", Libc.POLLHUP), ("POLLNVAL", Libc.POLLNVAL), ("MAP_NORESERVE", Libc.MAP_NORESERVE), ("MAP_HUGETLB", Libc.MAP_HUGETLB),
        ("MADV_MERGEABLE", Libc.MADV_MERGEABLE), ("MADV_HUGEPAGE", Libc.MADV_HUGEPAGE), ("EAGAIN", Libc.EAGAIN), ("EIO", Libc.EIO), ("EOPNOTSUPP", Libc.EOPNOTSUPP),
        ("EPOLLIN", Epoll.EPOLLIN), ("TUNSETIFF", Tun.TUNSETIFF), ("TUNGETIFF", Tun.TUNGETIFF), ("IFF_TAP", Tun.IFF_TAP), ("IFF_VNET_HDR", Tun.IFF_VNET_HDR),
        ("SIOCBRADDIF", Tun.SIOCBRADDIF), ("SIOCSIFMTU", Tun.SIOCSIFMTU),
        ("O_WRONLY", Libc.O_WRONLY), ("O_EXCL", Libc.O_EXCL), ("O_APPEND", Libc.O_APPEND), ("O_DIRECTORY", Libc.O_DIRECTORY), ("O_NOFOLLOW", Libc.O_NOFOLLOW),
        ("AT_FDCWD", Libc.AT_FDCWD), ("AT_SYMLINK_NOFOLLOW", Libc.AT_SYMLINK_NOFOLLOW), ("ELOOP", Libc.ELOOP), ("ENOTDIR", Libc.ENOTDIR), ("EEXIST", Libc.EEXIST), ("ENOENT", Libc.ENOENT),
        ("PR_SET_NO_NEW_PRIVS", Libc.PR_SET_NO_NEW_PRIVS), ("PR_GET_NO_NEW_PRIVS", Libc.PR_GET_NO_NEW_PRIVS), ("PR_GET_SECCOMP", Libc.PR_GET_SECCOMP), ("PR_SET_NAME", Libc.PR_SET_NAME),
        ("SECCOMP_SET_MODE_FILTER", Libc.SECCOMP_SET_MODE_FILTER), ("SECCOMP_FILTER_FLAG_TSYNC", Libc.SECCOMP_FILTER_FLAG_TSYNC),
        ("SECCOMP_RET_KILL_PROCESS", Libc.SECCOMP_RET_KILL_PROCESS), ("SECCOMP_RET_KILL_THREAD", Libc.SECCOMP_RET_KILL_THREAD), ("SECCOMP_RET_TRAP", Libc.SECCOMP_RET_TRAP),
        ("SECCOMP_RET_ERRNO", Libc.SECCOMP_RET_ERRNO), ("SECCOMP_RET_ALLOW", Libc.SECCOMP_RET_ALLOW), ("SECCOMP_RET_DATA", Libc.SECCOMP_RET_DATA),
        ("AUDIT_ARCH_X86_64", Libc.AUDIT_ARCH_X86_64), ("__NR_seccomp", Libc.SYS_seccomp), ("__NR_exit_group", Libc.SYS_exit_group), ("__NR_gettid", Libc.SYS_gettid),
        ("offsetof(struct seccomp_data, nr)", Libc.SeccompDataNr), ("offsetof(struct seccomp_data, arch)", Libc.SeccompDataArch), ("offsetof(struct seccomp_data, args)", Libc.SeccompDataArgs),
        ("SIGSYS", Libc.SIGSYS), ("offsetof(siginfo_t, si_code)", Libc.SiginfoCode),
        ("offsetof(siginfo_t, si_syscall)", Libc.SiginfoSyscall), ("offsetof(siginfo_t, si_arch)", Libc.SiginfoArch),
        ("RLIMIT_CORE", Libc.RLIMIT_CORE), ("RLIMIT_NOFILE", Libc.RLIMIT_NOFILE),
        ("PT_LOAD", Libc.PT_LOAD), ("PT_GNU_RELRO", Libc.PT_GNU_RELRO), ("PF_W", Libc.PF_W),
        // struct dl_phdr_info: only its first four members are declared in C# (the rest are never read).
        ("offsetof(struct dl_phdr_info, dlpi_addr)", (long)Marshal.OffsetOf<Libc.DlPhdrInfo>("dlpi_addr")),
        ("offsetof(struct dl_phdr_info, dlpi_name)", (long)Marshal.OffsetOf<Libc.DlPhdrInfo>("dlpi_name")),
        ("offsetof(struct dl_phdr_info, dlpi_phdr)", (long)Marshal.OffsetOf<Libc.DlPhdrInfo>("dlpi_phdr")),
        ("offsetof(struct dl_phdr_info, dlpi_phnum)", (long)Marshal.OffsetOf<Libc.DlPhdrInfo>("dlpi_phnum")),
        ("sizeof(pthread_attr_t)", Libc.PthreadAttrBytes), ("sizeof(cpu_set_t)", Libc.CpuSetBytes), ("PTHREAD_CREATE_DETACHED", Libc.PTHREAD_CREATE_DETACHED),
        ("S_IFLNK", Libc.S_IFLNK), ("S_IFBLK", Libc.S_IFBLK), ("S_IFDIR", Libc.S_IFDIR), ("S_IFREG", Libc.S_IFREG), ("BLKGETSIZE64", Libc.BLKGETSIZE64),
    ];

    private static Dictionary<string, ulong>? s_truth;

    private static Dictionary<string, ulong> HeaderTruth()
    {
        if (s_truth is not null) return s_truth;
        var c = new StringBuilder("""
            #define _GNU_SOURCE
            #include <sched.h>
            #include <stdio.h>
            #include <stddef.h>
            #include <signal.h>
            #include <fcntl.h>
            #include <sys/file.h>
            #include <sys/mman.h>
            #include <sys/stat.h>
            #include <sys/eventfd.h>
            #include <poll.h>
            #include <sys/epoll.h>
            #include <sys/ioctl.h>
            #include <errno.h>
            #include <net/if.h>
            #include <linux/if_tun.h>
            #include <linux/sockios.h>
            #include <linux/falloc.h>
            #include <linux/fs.h>
            #include <sys/prctl.h>
            #include <sys/resource.h>
            #include <sys/syscall.h>
            #include <linux/filter.h>
            #include <linux/seccomp.h>
            #include <linux/audit.h>
            #include <link.h>
            #include <elf.h>
            #include <pthread.h>
            int main(void){

            """);
        foreach (var (_, ctype, fields) in Structs)
        {
            c.Append($"printf(\"{ctype} %zu\\n\", sizeof({ctype}));\n");
            foreach (var (_, f) in fields) c.Append($"printf(\"{ctype}.{f} %zu\\n\", offsetof({ctype}, {f}));\n");
        }
        foreach (var (name, _) in Constants) c.Append($"printf(\"{name} %lu\\n\", (unsigned long)({name}));\n");
        c.Append("printf(\"stat %zu\\n\", sizeof(struct stat));\n");
        c.Append("printf(\"stat.st_mode %zu\\n\", offsetof(struct stat, st_mode));\n");
        c.Append("return 0;}\n");
        var truth = new Dictionary<string, ulong>();
        foreach (string line in NativeCompiler.CompileAndRun(c.ToString(), "libc_layout").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            int sp = line.LastIndexOf(' ');
            truth[line[..sp]] = ulong.Parse(line[(sp + 1)..]);
        }
        return s_truth = truth;
    }

    public static TheoryData<string> StructNames()
    {
        var data = new TheoryData<string>();
        foreach (var s in Structs) data.Add(s.CType);
        return data;
    }

    [Theory]
    [MemberData(nameof(StructNames))]
    public void StructSizeAndOffsetsMatchHeader(string ctype)
    {
        var truth = HeaderTruth();
        var (type, _, fields) = Structs.Single(s => s.CType == ctype);
        Assert.True(truth[ctype] == (ulong)Marshal.SizeOf(type), $"sizeof({ctype}): header {truth[ctype]}, C# {Marshal.SizeOf(type)}");
        foreach (var (cs, c) in fields)
            Assert.True(truth[$"{ctype}.{c}"] == (ulong)Marshal.OffsetOf(type, cs), $"{ctype}.{c}: header {truth[$"{ctype}.{c}"]}, C# {Marshal.OffsetOf(type, cs)}");
    }

    [Fact]
    public void ConstantsMatchHeaders()
    {
        var truth = HeaderTruth();
        foreach (var (name, value) in Constants)
            Assert.True(truth[name] == (ulong)value, $"{name}: header 0x{truth[name]:x}, C# 0x{value:x}");
    }

    [Fact]
    public void StatBufferMatchesGlibc()
    {
        var truth = HeaderTruth();
        Assert.True(truth["stat"] == (ulong)Libc.StatSize, $"sizeof(struct stat): header {truth["stat"]}, C# {Libc.StatSize}");
        Assert.True(truth["stat.st_mode"] == (ulong)Libc.StatModeOffset, $"offsetof(st_mode): header {truth["stat.st_mode"]}, C# {Libc.StatModeOffset}");
    }

    [Fact]
    public void OneLibraryNameForEveryImport()
    {
        // Every [LibraryImport] in the shared assembly names Libc.Lib; no "libc.so.6" next to "libc".
        var names = typeof(Libc).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.DeclaredOnly))
            .SelectMany(m => m.GetCustomAttributesData())
            .Where(a => a.AttributeType == typeof(LibraryImportAttribute))
            .Select(a => (string)a.ConstructorArguments[0].Value!)
            .ToHashSet();
        Assert.Equal([Libc.Lib], names);
    }
}
