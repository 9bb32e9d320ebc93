using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using Xunit;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>The jail of the real kvmps-vmm (docs/confinement.md, "The jail"): tests run as root, the jail drops to nobody.</summary>
[Collection("vmm-process")]
public class JailProcessTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private const uint Nobody = 65534;

    private static string StatusField(string statusFile, string name) =>
        File.ReadAllLines(statusFile).First(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim();

    /// <summary>A folder the jailed user owns, as management makes the VM folder for the kvmps user.</summary>
    private static TempDir OwnedByNobody()
    {
        var dir = new TempDir();
        File.SetUnixFileMode(dir.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Assert.Equal(0, Chown(dir.Path, Nobody, Nobody));
        return dir;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    private static extern int Chown(string path, uint uid, uint gid);

    [Fact]
    public void AJailedVmmIsUnprivilegedFilteredInItsOwnMountNamespaceAndCgroup()
    {
        Assert.Equal("0", StatusField("/proc/self/status", "Uid").Split('\t')[0]); // the jail is set up by root
        using var dir = OwnedByNobody();
        string disk = dir.File("disk.raw");
        using (var f = File.Create(disk)) f.SetLength(16 << 20);
        Assert.Equal(0, Chown(disk, Nobody, Nobody));
        string sock = dir.File("c.sock");
        string cgroup = $"kvmps/jailtest-{Guid.NewGuid():N}";
        using var vmm = new VmmProcess("--jail", "on", "--user", $"{Nobody}:{Nobody}", "--cgroup", cgroup, "--vcpus", "2", "--serial", $"file:{dir.File("serial.log")}",
            "--control-socket", sock, "--device", "rng", "--device", $"block,path={disk},format=raw", "--device", $"vsock,guest_cid=3,uds_path={dir.File("v.sock")}");
        try
        {
            using var client = new ControlClient(sock, Timeout);
            client.WaitForState("Running", Timeout);
            client.Ok("metrics");
            string status = $"/proc/{vmm.Pid}/status";
            Assert.Equal($"{Nobody}\t{Nobody}\t{Nobody}\t{Nobody}", StatusField(status, "Uid"));
            Assert.Equal($"{Nobody}\t{Nobody}\t{Nobody}\t{Nobody}", StatusField(status, "Gid"));
            Assert.Equal("0000000000000000", StatusField(status, "CapEff"));
            Assert.Equal("0000000000000000", StatusField(status, "CapPrm"));
            Assert.Equal("0000000000000000", StatusField(status, "CapInh"));
            // Every thread: another user with no capabilities (credentials are per thread), and filtered.
            int checkedThreads = 0;
            foreach (string task in Directory.GetDirectories($"/proc/{vmm.Pid}/task"))
            {
                string name, uid, caps, seccomp;
                try
                {
                    name = File.ReadAllText(Path.Combine(task, "comm")).Trim();
                    (uid, caps, seccomp) = (StatusField(Path.Combine(task, "status"), "Uid"), StatusField(Path.Combine(task, "status"), "CapEff"), StatusField(Path.Combine(task, "status"), "Seccomp"));
                }
                catch (IOException) { continue; } // a short-lived thread (a request's) that ended since the listing
                Assert.True(uid.StartsWith($"{Nobody}\t", StringComparison.Ordinal), $"thread '{name}' keeps another uid");
                Assert.True(caps == "0000000000000000", $"thread '{name}' keeps capabilities");
                Assert.True(seccomp == "2", $"thread '{name}' is not filtered");
                checkedThreads++;
            }
            Assert.True(checkedThreads >= 3, $"only {checkedThreads} threads checked");
            // Its own mount namespace, whose root holds only the VM's files.
            Assert.NotEqual(new FileInfo("/proc/self/ns/mnt").LinkTarget, new FileInfo($"/proc/{vmm.Pid}/ns/mnt").LinkTarget);
            string root = $"/proc/{vmm.Pid}/root";
            Assert.True(File.Exists(root + disk), "the disk is in the jail");
            Assert.True(File.Exists(root + "/dev/kvm"), "/dev/kvm is in the jail");
            Assert.False(File.Exists(root + "/etc/passwd"), "/etc/passwd is not in the jail");
            Assert.False(Directory.Exists(root + "/usr"), "/usr is not in the jail");
            // Every thread in it, with its root: the vCPUs, and the runtime's own threads (finalizer, signal handling,
            // socket events), which once stayed in the host's namespace with the host's root.
            string jailNamespace = new FileInfo($"/proc/{vmm.Pid}/ns/mnt").LinkTarget!;
            var threadNames = new List<string>();
            foreach (string task in Directory.GetDirectories($"/proc/{vmm.Pid}/task"))
            {
                string name, mountNamespace;
                bool seesHostFiles, seesJailFiles;
                try
                {
                    name = File.ReadAllText(Path.Combine(task, "comm")).Trim();
                    mountNamespace = new FileInfo(Path.Combine(task, "ns/mnt")).LinkTarget!;
                    seesHostFiles = File.Exists(Path.Combine(task, "root/etc/passwd"));
                    seesJailFiles = File.Exists(Path.Combine(task, "root") + disk);
                }
                catch (IOException) { continue; } // ended since the listing
                Assert.True(mountNamespace == jailNamespace, $"thread '{name}' is in the mount namespace {mountNamespace}, not the jail's {jailNamespace}");
                Assert.False(seesHostFiles, $"thread '{name}' has the host's root");
                Assert.True(seesJailFiles, $"thread '{name}': its root was not readable, or is not the jail's");
                threadNames.Add(name);
            }
            Assert.Contains(".NET Finalizer", threadNames);
            Assert.Contains(threadNames, n => n.StartsWith("vcpu", StringComparison.Ordinal));
            // Resource limits it cannot raise: open files, and no core dumps.
            string limits = File.ReadAllText($"/proc/{vmm.Pid}/limits");
            Assert.Matches(@"Max open files\s+4096\s+4096\s", limits);
            Assert.Matches(@"Max core file size\s+0\s+0\s", limits);
            // Its cgroup, below the one it was started in.
            string cgroups = File.ReadAllText($"/proc/{vmm.Pid}/cgroup");
            Assert.Contains("/" + cgroup + "\n", cgroups);
            // A snapshot into the VM's folder still works from the jail.
            client.Ok("snapshot.create", $"\"path\": \"{dir.File("snap")}\", \"disks\": \"ignore\"");
            Assert.True(Directory.Exists(dir.File("snap")));
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
            Assert.Contains("kvmps-vmm: jailed: user 65534:65534", vmm.Stderr);
            Assert.DoesNotContain("sandbox violation", vmm.Stderr);
            Assert.False(File.Exists(sock), "the jailed VMM removes its control socket");
        }
        finally
        {
            vmm.Dispose(); // a failed check leaves it running: ended before its cgroup is removed
            RemoveCgroup(cgroup);
        }
    }

    /// <summary>The cgroup folders a test made (empty once the VMM exited); the v1 memory one sits below the test's own cgroup.</summary>
    private static void RemoveCgroup(string cgroup)
    {
        foreach (string line in File.ReadAllLines("/proc/self/cgroup"))
        {
            var f = line.Split(':', 3);
            foreach (string controller in f[1].Length == 0 ? ["unified", ""] : f[1].Split(','))
            {
                string dir = Path.Join("/sys/fs/cgroup", controller, f[2], cgroup);
                try { if (Directory.Exists(dir)) Directory.Delete(dir); } catch (IOException) { }
            }
        }
    }

    [Fact]
    public void JailOffRunsAsTheCallerInTheCallersNamespace()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess("--jail", "off", "--serial", "none", "--control-socket", sock);
        using var client = new ControlClient(sock, Timeout);
        client.WaitForState("Running", Timeout);
        Assert.StartsWith("0\t", StatusField($"/proc/{vmm.Pid}/status", "Uid"), StringComparison.Ordinal);
        Assert.Equal(new FileInfo("/proc/self/ns/mnt").LinkTarget, new FileInfo($"/proc/{vmm.Pid}/ns/mnt").LinkTarget);
        client.Ok("stop", "\"graceful\": false");
        Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
        Assert.DoesNotContain("jailed", vmm.Stderr);
    }

    [Theory]
    [InlineData(new[] { "--jail", "maybe" }, "--jail: 'maybe' is not on or off")]
    [InlineData(new[] { "--jail", "off", "--user", "65534:65534" }, "--user needs the jail")]
    [InlineData(new[] { "--user", "no-such-user-kvmps" }, "no user 'no-such-user-kvmps' in /etc/passwd")]
    [InlineData(new[] { "--user", "0:0" }, "is root")]
    [InlineData(new[] { "--cgroup", "/abs" }, "--cgroup: '/abs' is not a relative cgroup path")]
    [InlineData(new[] { "--cgroup", "kvmps/../x" }, "is not a relative cgroup path")]
    public void BadJailOptionsAreUsageErrors(string[] args, string message)
    {
        var (code, _, stderr) = VmmProcess.Run(Timeout, args);
        Assert.Equal(VmmExitCode.UsageError, code);
        Assert.Contains(message, stderr);
    }
}
