using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;

namespace KvmPS.Cli.Tests;

/// <summary>
/// <c>kvmps vm migrate</c> and the hidden <c>vm receive</c> in-process, without a second host: usage errors and refusals
/// before any ssh runs. The moves themselves: TwoHosts/MoveCliTests.cs.
/// </summary>
public sealed class VmMigrateUsageTests : IDisposable
{
    private readonly string _root = Path.Combine("/tmp", "kvmu-" + Guid.NewGuid().ToString("N")[..8]);
    private readonly VmManager _manager;

    public VmMigrateUsageTests() => _manager = new VmManager(VmStore.Open(_root));

    public void Dispose()
    {
        if (Directory.Exists(_root))
            Directory.Delete(_root, recursive: true);
    }

    private (int Code, string Out, string Err) Run(string stdin, params string[] args) => CliRun.With(_manager, stdin, args);

    [Fact]
    public void A_destination_that_would_inject_ssh_options_or_none_at_all_is_a_usage_error()
    {
        var (code, _, error) = Run("", "vm", "migrate", "web", "--to", "-oProxyCommand=touch /tmp/x");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("starts with '-'", error);

        (code, _, error) = Run("", "vm", "migrate", "web");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("kvmps vm migrate NAME --to [user@]HOST", error);

        (code, _, error) = Run("", "vm", "migrate", "web", "--to", "h2", "--downtime", "0");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--downtime '0'", error);

        (code, var help, _) = Run("", "vm", "migrate", "--help");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("Live migration of a running or paused VM to another host", help);
        Assert.Contains("--tunnel", help);
        Assert.Contains("--migration-address ADDR", help);

        // The address is for the direct stream; with --tunnel it would be ignored, so it is refused.
        (code, _, error) = Run("", "vm", "migrate", "web", "--to", "h2", "--tunnel", "--migration-address", "10.0.0.2");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--migration-address is for the direct TCP stream", error);
    }

    [Fact]
    public void A_vm_that_is_not_running_or_missing_is_refused_before_ssh_runs()
    {
        _manager.New(TestDefinitions.Minimal("offvm"));
        var (code, _, error) = Run("", "vm", "migrate", "offvm", "--to", "h2");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("only a running or paused VM moves live", error);

        (code, _, _) = Run("", "vm", "migrate", "novm", "--to", "h2");
        Assert.Equal(ExitCodes.VmNotFound, code);
    }

    [Fact]
    public void Receive_refuses_a_name_this_store_has_and_a_disk_it_lacks_and_stores_nothing()
    {
        _manager.New(TestDefinitions.Minimal("taken"));
        var definition = Convert.ToBase64String(KvmPS.Management.Definitions.VmDefinitionJson.SerializeToUtf8Bytes(TestDefinitions.Minimal("taken")));
        var (code, output, error) = Run(definition + "\n", "vm", "receive");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Equal("", output);
        Assert.Contains("this host already has a VM named 'taken'", error);

        var withDisk = TestDefinitions.Minimal("disky") with
        {
            Disks = new[] { new KvmPS.Management.Definitions.DiskDefinition("/nonexistent/shared/disk.raw", KvmPS.Management.Definitions.DiskFormat.Raw, 1 << 20) },
        };
        (code, output, error) = Run(Convert.ToBase64String(KvmPS.Management.Definitions.VmDefinitionJson.SerializeToUtf8Bytes(withDisk)) + "\n", "vm", "receive");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("its disk '/nonexistent/shared/disk.raw' is not on this host", error);
        Assert.Contains("or with -IncludeStorage", error);
        Assert.Null(_manager.TryGet("disky"));

        // --include-storage (a move with the disks): the copy's path must be free here, and the space must be there.
        var copied = TestDefinitions.Minimal("copier") with
        {
            Disks = new[] { new KvmPS.Management.Definitions.DiskDefinition("data.qcow2", KvmPS.Management.Definitions.DiskFormat.Qcow2) },
        };
        var copiedLine = Convert.ToBase64String(KvmPS.Management.Definitions.VmDefinitionJson.SerializeToUtf8Bytes(copied)) + "\n";
        var store = VmStore.Open(_root);
        Directory.CreateDirectory(store.DiskDirectory("copier"));
        File.WriteAllText(Path.Combine(store.DiskDirectory("copier"), "data.qcow2"), "mine");
        (code, _, error) = Run(copiedLine, "vm", "receive", "--include-storage", "1048576");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("its disk 'data.qcow2' cannot be copied here", error);
        Assert.Contains("already exists on this host", error);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(store.DiskDirectory("copier"), "data.qcow2")));
        Directory.Delete(store.VmDirectory("copier"), recursive: true);
        (code, _, error) = Run(copiedLine, "vm", "receive", "--include-storage", "9000000000000000000");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("its disks (data.qcow2) need up to", error);
        Assert.Contains("MiB available", error);
        Assert.Null(_manager.TryGet("copier"));

        (code, _, error) = Run("not base64!\n", "vm", "receive");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("not base64", error);
    }
}
