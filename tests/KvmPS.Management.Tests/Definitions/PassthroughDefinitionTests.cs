using System.Net.Sockets;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.Definitions;

/// <summary>vfio-user devices in a definition: vm.json, manifests, the manager's add/remove, and the start's check.</summary>
public sealed class PassthroughDefinitionTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static VmDefinition WithDevices(string name, params string[] sockets) =>
        TestDefinitions.Minimal(name) with { VfioUserDevices = sockets, PciPassthrough = new[] { PciAddress.Parse("0000:03:00.0") } };

    [Fact]
    public void VmJsonKeepsThemAndLeavesTheKeyOutWhenThereAreNone()
    {
        var definition = WithDevices("j", "/run/a.sock", "/run/b.sock");
        var json = VmDefinitionJson.Serialize(definition);
        Assert.Contains("\"VfioUserDevices\"", json, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(definition, VmDefinitionJson.Deserialize(json));
        Assert.DoesNotContain("VfioUserDevices", VmDefinitionJson.Serialize(TestDefinitions.Minimal("none")), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void AnExportedManifestReadsBackToTheSameDevices()
    {
        var definition = WithDevices("m", "/run/a.sock");
        var text = ManifestExporter.Write([(definition, VmState.Off)]);
        Assert.Contains("VfioUserDevices    = @(\n                '/run/a.sock'\n            )", text);
        var read = DesiredStateReader.Parse(text, "export.psd1").Vms.Single().Definition!;
        Assert.Equal(definition.VfioUserDevices, read.VfioUserDevices);
        Assert.Equal(definition.PciPassthrough, read.PciPassthrough);
    }

    [Fact]
    public void TheManagerAddsAndRemovesThemAndRefusesDuplicatesAndStrangers()
    {
        var store = VmStore.Open(Path.Combine(_dir.Path, "store"), allowedPaths: AllowedPaths.StoreOnly(Path.Combine(_dir.Path, "store")));
        var manager = new VmManager(store, new VmmProcessLauncher("/nonexistent/kvmps-vmm"));
        manager.New(TestDefinitions.Minimal("vu"));

        var added = manager.AddVfioUserDevices("vu", ["/run/a.sock"]);
        Assert.Equal(["/run/a.sock"], store.Get("vu").VfioUserDevices);
        Assert.Equal("VfioUserDevices", Assert.Single(added.Changes).Property);
        var twice = Assert.Throws<VmDeviceAlreadyAttachedException>(() => manager.AddVfioUserDevices("vu", ["/run/a.sock"]));
        Assert.Contains("/run/a.sock", twice.Message);
        var stranger = Assert.Throws<VmDeviceNotFoundException>(() => manager.RemoveVfioUserDevices("vu", ["/run/b.sock"]));
        Assert.Contains("/run/b.sock", stranger.Message);
        Assert.Equal(["/run/a.sock"], store.Get("vu").VfioUserDevices);
        manager.RemoveVfioUserDevices("vu", ["/run/a.sock"]);
        Assert.Empty(store.Get("vu").VfioUserDevices);
    }

    [Fact]
    public void StartIsRefusedNamingTheSocketWhenNoServerIsThere()
    {
        var root = Path.Combine(_dir.Path, "store");
        var store = VmStore.Open(root, allowedPaths: AllowedPaths.StoreOnly(root));
        string missing = Path.Combine(_dir.Path, "absent.sock"), plain = Path.Combine(_dir.Path, "plain.sock");
        File.WriteAllText(plain, "not a socket");
        var launcher = new VmmProcessLauncher("/bin/true");

        store.Create(TestDefinitions.Minimal("s1") with { VfioUserDevices = new[] { missing } });
        var error = Assert.Throws<VfioUserServerNotFoundException>(() => launcher.Launch(store, store.Get("s1")));
        Assert.Equal(missing, error.SocketPath);
        Assert.Contains("no such socket", error.Message);

        store.Create(TestDefinitions.Minimal("s2") with { VfioUserDevices = new[] { plain } });
        Assert.Contains("not a Unix socket", Assert.Throws<VfioUserServerNotFoundException>(() => launcher.Launch(store, store.Get("s2"))).Message);

        // A listening socket passes the check (the launch then goes on to start the VMM).
        string listening = Path.Combine(_dir.Path, "dev.sock");
        using var server = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(listening));
        server.Listen();
        store.Create(TestDefinitions.Minimal("s3") with { VfioUserDevices = new[] { listening } });
        launcher.Launch(store, store.Get("s3")); // /bin/true: exits at once
        Assert.Contains("\"vfio-user\"", File.ReadAllText(store.VmmConfigPath("s3")));
    }
}
