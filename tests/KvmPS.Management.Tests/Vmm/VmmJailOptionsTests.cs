using System.Collections;
using KvmPS.Interop;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Vmm;

/// <summary>How management starts a jailed VMM (docs/confinement.md, "The jail").</summary>
/// <remarks>In the VMM tests' collection: they set KVMPS_VMM_JAIL, which a VMM test starting a VM meanwhile would read.</remarks>
[Collection(VmmCollection.Name)]
public sealed class VmmJailOptionsTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_jailed_vmm_keeps_only_the_locale_and_kvmps_and_dotnet_settings()
    {
        var current = new Hashtable { ["HOME"] = "/root", ["SSH_AUTH_SOCK"] = "/tmp/agent", ["LANG"] = "C.UTF-8", ["LC_ALL"] = "C", ["TZ"] = "UTC",
            ["KVMPS_SANDBOX_SELFTEST"] = "vcpu", ["DOTNET_gcServer"] = "0", ["PATH"] = "/home/x/bin:/usr/bin" };
        var kept = VmmJailOptions.MinimalEnvironment(current);
        Assert.Equal(["DOTNET_gcServer=0", "KVMPS_SANDBOX_SELFTEST=vcpu", "LANG=C.UTF-8", "LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TZ=UTC"], kept.Order());
    }

    [Fact]
    public void Off_turns_the_jail_off()
    {
        string? before = Environment.GetEnvironmentVariable(VmmJailOptions.Variable);
        Environment.SetEnvironmentVariable(VmmJailOptions.Variable, "off");
        try
        {
            Assert.Null(VmmJailOptions.JailUser());
            Assert.Null(VmmJailOptions.UnjailedNote());
        }
        finally { Environment.SetEnvironmentVariable(VmmJailOptions.Variable, before); }
    }

    [Theory]
    [InlineData("")]
    [InlineData(null)]
    public void Left_unset_root_jails_as_the_kvmps_user_when_it_exists_else_says_why_not(string? setting)
    {
        Assert.Equal(0u, Libc.GetEuid()); // the tests run as root, as CI does
        string? before = Environment.GetEnvironmentVariable(VmmJailOptions.Variable);
        Environment.SetEnvironmentVariable(VmmJailOptions.Variable, setting);
        try
        {
            var entry = File.ReadLines("/etc/passwd").Select(l => l.Split(':')).FirstOrDefault(f => f[0] == VmmJailOptions.UserName);
            if (entry is null)
            {
                Assert.Null(VmmJailOptions.JailUser());
                Assert.Contains("./build.sh setup", VmmJailOptions.UnjailedNote());
            }
            else
            {
                Assert.Equal((uint.Parse(entry[2]), uint.Parse(entry[3])), VmmJailOptions.JailUser());
                Assert.Null(VmmJailOptions.UnjailedNote());
            }
        }
        finally { Environment.SetEnvironmentVariable(VmmJailOptions.Variable, before); }
    }

    [Fact]
    public void An_unknown_setting_is_refused_naming_it()
    {
        string? before = Environment.GetEnvironmentVariable(VmmJailOptions.Variable);
        Environment.SetEnvironmentVariable(VmmJailOptions.Variable, "yes");
        try
        {
            var e = Assert.Throws<JailSettingException>(() => VmmJailOptions.JailUser());
            Assert.Contains("KVMPS_VMM_JAIL=yes", e.Message);
        }
        finally { Environment.SetEnvironmentVariable(VmmJailOptions.Variable, before); }
    }

    [Fact]
    public void A_staging_folder_goes_to_the_vm_folders_owner_when_that_is_not_root()
    {
        Assert.Equal(0u, Libc.GetEuid()); // chown needs root, as the jail does
        string vm = Path.Combine(_dir.Path, "vm");
        string staging = Path.Combine(vm, "snapshots", ".staging-1");
        Directory.CreateDirectory(staging);
        VmmJailOptions.GiveToVmmOf(vm, staging); // the VM folder is root's: nothing changes
        Assert.Equal(0u, FileOwnership.Of(staging)!.Value.OwnerUid);
        Assert.Equal(0, Libc.Lchown(vm, 65534, 65534));
        VmmJailOptions.GiveToVmmOf(vm, staging);
        Assert.Equal(65534u, FileOwnership.Of(Path.Combine(vm, "snapshots"))!.Value.OwnerUid);
        Assert.Equal(65534u, FileOwnership.Of(staging)!.Value.OwnerUid);
        VmmJailOptions.GiveToVmmOf(vm, _dir.Path); // outside the VM folder: never
        Assert.Equal(0u, FileOwnership.Of(_dir.Path)!.Value.OwnerUid);
    }
}
