using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Lifecycle;

/// <summary>
/// Issue 17 item 1 with the real kvmps-vmm, jailed (<c>KVMPS_VMM_JAIL=on</c>, the <c>kvmps</c> user): a disk hot-added
/// to the running VM is opened by management and passed to the VMM (docs/vmm.md, "Passing open files"), so its image
/// stays root's and 0600; and the VMM's cgroup folder is gone once the VM stopped.
/// </summary>
[Collection(VmmCollection.Name)]
public sealed class PassedFilesVmmTests(VmmFixture fixture) : IDisposable
{
    private readonly LifecycleSandbox _sandbox = new(fixture, new StorageDiskImageCreator());

    public void Dispose() => _sandbox.Dispose();

    private static string StatusField(int pid, string name) =>
        File.ReadAllLines($"/proc/{pid}/status").First(l => l.StartsWith(name + ":", StringComparison.Ordinal))[(name.Length + 1)..].Trim();

    [Fact]
    public void A_disk_hot_added_to_a_jailed_vmm_is_passed_open_and_its_image_stays_roots()
    {
        Assert.Equal(0u, Libc.GetEuid()); // a jailed VMM is started by root
        string? before = Environment.GetEnvironmentVariable(VmmJailOptions.Variable);
        Environment.SetEnvironmentVariable(VmmJailOptions.Variable, "on");
        try
        {
            var (uid, _) = VmmJailOptions.JailUser()!.Value;
            var manager = _sandbox.Manager;
            manager.New(TestDefinitions.Minimal("jailhot") with { Memory = MemorySettings.Fixed(64L << 20) });
            int pid = manager.Start("jailhot").Pid!.Value;
            Assert.Equal(uid.ToString(), StatusField(pid, "Uid").Split('\t')[0]);
            Assert.NotEmpty(VmmCgroupOptions.FoldersOf(pid, "jailhot"));

            var added = manager.AttachDisk("jailhot", new DiskAttachRequest("hot.raw", DiskFormat.Raw, CreateSizeBytes: 4L << 20));

            Assert.Equal(ChangeApplication.AppliedLive, Assert.Single(added.Changes).Application);
            string image = _sandbox.Store.ResolveDiskPath("jailhot", "hot.raw");
            using (var client = VmmClient.Connect(_sandbox.Store.SocketPath("jailhot")))
                Assert.Contains(client.Describe().Devices, d => d.Type == "block" && d.Options?["path"].GetString() == image);
            // Not given to the jail's user (as management did before it passed files): root's, owner-only.
            var owner = FileOwnership.Of(image)!.Value;
            Assert.Equal(0u, owner.OwnerUid);
            Assert.Equal(0x180u /* 0600 */, owner.Permissions);
            // The VMM holds the image open although its user may not open it.
            Assert.Contains(Directory.GetFiles($"/proc/{pid}/fd"), fd => new FileInfo(fd).LinkTarget == image);

            manager.Stop("jailhot", force: true);
            // The VMM's cgroup folder went with it.
            Assert.Empty(CgroupLimits.FoldersBelowOwn(VmmCgroupOptions.CgroupPath("jailhot")));
        }
        finally
        {
            Environment.SetEnvironmentVariable(VmmJailOptions.Variable, before);
        }
    }
}
