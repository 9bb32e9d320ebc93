using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Cli.Tests;

/// <summary><c>kvmps vm attach-pci|detach-pci</c> on a stored VM: vfio-user sockets and host functions, usage errors.</summary>
public sealed class PassthroughCliTests : IDisposable
{
    private readonly TempDirectory _root = new();
    private readonly VmStore _store;
    private readonly VmManager _manager;

    public PassthroughCliTests()
    {
        _store = VmStore.Open(Path.Combine(_root.Path, "s"));
        _manager = new VmManager(_store, options: new VmManagerOptions { QueryTimeout = TimeSpan.FromSeconds(5) });
        _manager.New(TestDefinitions.Minimal("p"));
    }

    public void Dispose() => _root.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    [Fact]
    public void Attach_and_detach_a_vfio_user_device_edit_the_definition()
    {
        var (code, output, error) = Run("vm", "attach-pci", "p", "--vfio-user", "/run/dev.sock", "--json");
        Assert.True(code == 0, error);
        Assert.Contains("VfioUserDevices", output);
        Assert.Equal(["/run/dev.sock"], _store.Get("p").VfioUserDevices);

        (code, _, error) = Run("vm", "attach-pci", "p", "--vfio-user", "/run/dev.sock");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("already has vfio-user device '/run/dev.sock'", error);

        (code, _, error) = Run("vm", "detach-pci", "p", "--vfio-user", "/run/other.sock");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("no vfio-user device '/run/other.sock'", error);

        (code, _, error) = Run("vm", "detach-pci", "p", "--vfio-user", "/run/dev.sock");
        Assert.True(code == 0, error);
        Assert.Empty(_store.Get("p").VfioUserDevices);
    }

    [Fact]
    public void On_a_running_vm_a_vfio_user_device_is_hot_plugged_and_unplugged()
    {
        var definition = TestDefinitions.Minimal("r");
        _manager.New(definition);
        using var vmm = new FakeVmm(_store.SocketPath("r"), VmmConfigBuilder.BuildConfiguration(definition, "/s", "/l").Devices) { TakesPassedFiles = true };
        // The server: management connects to it and passes the connection to the VMM.
        string socket = Path.Combine(_root.Path, "dev.sock");
        using var server = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        server.Bind(new System.Net.Sockets.UnixDomainSocketEndPoint(socket));
        server.Listen(1);

        var (code, output, error) = Run("vm", "attach-pci", "r", "--vfio-user", socket);
        Assert.True(code == 0, error);
        Assert.Contains("(applied to the running VM and stored)", output);
        var device = Assert.Single(vmm.Devices, d => d.Type == "vfio-user");
        Assert.Equal(socket, device.Options!["socket"].GetString());
        Assert.Equal(["connected Unix stream socket"], vmm.PassedFiles);
        Assert.Equal([socket], _store.Get("r").VfioUserDevices);

        (code, output, error) = Run("vm", "detach-pci", "r", "--vfio-user", socket);
        Assert.True(code == 0, error);
        Assert.Contains("(applied to the running VM and stored)", output);
        Assert.DoesNotContain(vmm.Devices, d => d.Type == "vfio-user");
        Assert.Empty(_store.Get("r").VfioUserDevices);
    }

    [Fact]
    public void Usage_errors_name_what_is_wrong()
    {
        var (code, _, error) = Run("vm", "attach-pci", "p");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("exactly one of --host", error);
        (code, _, error) = Run("vm", "attach-pci", "p", "--host", "0000:01:00.0", "--vfio-user", "/run/x.sock");
        Assert.Equal(ExitCodes.Usage, code);
        (code, _, error) = Run("vm", "attach-pci", "p", "--host", "junk");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("junk", error);
    }

    [Fact]
    public void A_host_function_this_host_lacks_is_refused_naming_it()
    {
        var (code, _, error) = Run("vm", "attach-pci", "p", "--host", "0000:ff:1f.7");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("0000:ff:1f.7", error);
        Assert.Empty(_store.Get("p").PciPassthrough);
    }
}
