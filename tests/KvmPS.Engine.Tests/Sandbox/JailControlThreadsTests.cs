using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using Xunit;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>
/// The control socket of a jailed kvmps-vmm is served from inside the jail (docs/confinement.md, "The control socket
/// is served from inside the jail"): the threads that serve requests, and the snapshot and migration threads they
/// start, resolve paths in the jail's mount namespace. Tests run as root; the jail drops to nobody.
/// </summary>
[Collection("vmm-process")]
public class JailControlThreadsTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private const uint Nobody = 65534;
    private static readonly string[] JailAsNobody = ["--jail", "on", "--user", $"{Nobody}:{Nobody}"];

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    private static extern int Chown(string path, uint uid, uint gid);

    /// <summary>
    /// A store in miniature: a root-owned 0700 folder (the store's root) holding the VM's folder, which the jail's user
    /// owns. The jail's user cannot pass the outer folder in the host's tree; in the jail the VM folder is at its path.
    /// </summary>
    private static (TempDir Store, string VmFolder) Store()
    {
        var store = new TempDir();
        File.SetUnixFileMode(store.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string vm = Directory.CreateDirectory(store.File("vm")).FullName;
        File.SetUnixFileMode(vm, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Assert.Equal(0, Chown(vm, Nobody, Nobody));
        return (store, vm);
    }

    private static string MountNamespace(string procPath) => new FileInfo(Path.Combine(procPath, "ns/mnt")).LinkTarget!;

    /// <summary>The mount namespace of each thread, by name (a name may repeat: each is listed).</summary>
    private static List<(string Name, string Namespace)> ThreadNamespaces(int pid) =>
        [.. Directory.GetDirectories($"/proc/{pid}/task").Select(t => (File.ReadAllText(Path.Combine(t, "comm")).Trim(), MountNamespace(t)))];

    private static void AssertControlThreadsInTheJail(VmmProcess vmm)
    {
        string jail = MountNamespace($"/proc/{vmm.Pid}");
        Assert.NotEqual(MountNamespace("/proc/self"), jail);
        var threads = ThreadNamespaces(vmm.Pid);
        var control = threads.Where(t => t.Name.StartsWith("control-accept", StringComparison.Ordinal) || t.Name.StartsWith("control-client", StringComparison.Ordinal)).ToList();
        Assert.Contains(control, t => t.Name.StartsWith("control-accept", StringComparison.Ordinal));
        Assert.Contains(control, t => t.Name.StartsWith("control-client", StringComparison.Ordinal));
        foreach (var (name, ns) in control) Assert.True(ns == jail, $"thread '{name}' is in {ns}, not the jail's {jail}: {string.Join(", ", threads)}");
    }

    [Fact]
    public void ControlThreadsAndTheSnapshotsTheyWriteAreInTheJail()
    {
        var (store, vm) = Store();
        using (store)
        {
            string sock = Path.Combine(vm, "c.sock");
            using var vmm = new VmmProcess([.. JailAsNobody, "--serial", "none", "--control-socket", sock]);
            using var client = new ControlClient(sock, Timeout); // held open: a control-client thread serves it
            client.WaitForState("Running", Timeout);
            AssertControlThreadsInTheJail(vmm);
            // Written by the control thread: from the host's tree the jail's user could not reach the VM folder
            // (the outer folder is root's, 0700), so this failed with "the parent directory … does not exist".
            client.Ok("snapshot.create", $"\"path\": \"{Path.Combine(vm, "snap")}\", \"disks\": \"ignore\"");
            Assert.True(Directory.EnumerateFiles(Path.Combine(vm, "snap")).Any());
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
            Assert.DoesNotContain("sandbox violation", vmm.Stderr);
        }
    }

    [Fact]
    public void AVmReceivedOverTcpMovesItsControlThreadsIntoTheJailOnceThereAndAJailedSourceSendsOnlyTouchedPages()
    {
        var (store, vm) = Store();
        using (store)
        using (var sourceDir = new TempDir())
        {
            int port;
            using (var l = new TcpListener(IPAddress.Loopback, 0)) { l.Start(); port = ((IPEndPoint)l.LocalEndpoint).Port; }
            string uri = $"tcp:127.0.0.1:{port}";
            string dstSock = Path.Combine(vm, "dst.sock");
            using var destination = new VmmProcess([.. JailAsNobody, "--incoming", uri, "--serial", "none", "--control-socket", dstSock]);
            // Before the stream comes it answers status (as root, not jailed yet: the stream brings what it opens).
            using (var early = new ControlClient(dstSock, Timeout))
                Assert.Equal("Created", early.Request("status").GetProperty("result").GetProperty("state").GetString());
            Assert.Equal(0, Chown(sourceDir.Path, Nobody, Nobody));
            string srcSock = sourceDir.File("src.sock");
            using var source = new VmmProcess([.. JailAsNobody, "--serial", "none", "--control-socket", srcSock]);
            using (var src = new ControlClient(srcSock, Timeout))
            {
                src.WaitForState("Running", Timeout);
                src.Ok("migrate", $"\"uri\": \"{uri}\"");
            }
            Assert.Equal(VmmExitCode.Migrated, source.WaitForExit(Timeout));
            // The jailed source sent only the pages its idle guest touched (a few hundred of 65,536): it reads its
            // pagemap through a descriptor opened before it left root (after, its /proc files are root's, 0400).
            var sent = System.Text.RegularExpressions.Regex.Match(source.Stderr, @"migrated to \S+: .* (\d+) pages in");
            Assert.True(sent.Success, source.Stderr);
            Assert.InRange(long.Parse(sent.Groups[1].Value), 1, 16384);
            using var client = new ControlClient(dstSock, Timeout);
            client.WaitForState("Running", Timeout);
            AssertControlThreadsInTheJail(destination);
            client.Ok("snapshot.create", $"\"path\": \"{Path.Combine(vm, "snap")}\", \"disks\": \"ignore\"");
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(VmmExitCode.Ok, destination.WaitForExit(Timeout));
            Assert.Contains("received the VM from", destination.Stderr);
            Assert.DoesNotContain("sandbox violation", destination.Stderr);
        }
    }

    [Fact]
    public void AnotherProcessOfTheJailsUserCannotReadTheVmmsMemory()
    {
        var (store, vm) = Store();
        using (store)
        {
            string sock = Path.Combine(vm, "c.sock");
            using var vmm = new VmmProcess([.. JailAsNobody, "--serial", "none", "--control-socket", sock]);
            using var client = new ControlClient(sock, Timeout);
            client.WaitForState("Running", Timeout);
            // Every jailed VMM runs as the same user: leaving root made it non-dumpable (fs.suid_dumpable 0), so a
            // compromised VMM, or any process of that user, cannot open another's memory or environment.
            foreach (string file in new[] { "mem", "environ" })
            {
                var psi = new ProcessStartInfo("setpriv", ["--reuid", $"{Nobody}", "--regid", $"{Nobody}", "--clear-groups", "head", "-c", "1", $"/proc/{vmm.Pid}/{file}"])
                    { RedirectStandardError = true, RedirectStandardOutput = true };
                using var reader = Process.Start(psi)!;
                string stderr = reader.StandardError.ReadToEnd();
                reader.WaitForExit();
                Assert.NotEqual(0, reader.ExitCode);
                Assert.Contains("Permission denied", stderr);
            }
            client.Ok("stop", "\"graceful\": false");
            Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
        }
    }
}
