using System.Diagnostics;
using System.Text.Json;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Pools;
using KvmPS.Management.Store;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary><c>kvmps pool …</c> and <c>kvmps vol …</c> in-process over a temporary store (no VMM needed), and across processes.</summary>
public sealed class PoolCliTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly string _root;
    private readonly VmManager _manager;

    public PoolCliTests()
    {
        _root = Path.Combine(_dir.Path, "store");
        _manager = new VmManager(VmStore.Open(_root, allowedPaths: AllowedPaths.StoreOnly(_root)), diskImageCreator: new StorageDiskImageCreator());
    }

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    [Fact]
    public void Pool_create_list_info_and_remove_with_json()
    {
        var folder = Path.Combine(_dir.Path, "lab");

        var (code, output, err) = Run("pool", "create", "lab", folder, "--create-path", "--autostart", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using (var created = JsonDocument.Parse(output))
        {
            Assert.Equal("lab", created.RootElement.GetProperty("name").GetString());
            Assert.Equal(folder, created.RootElement.GetProperty("path").GetString());
            Assert.True(created.RootElement.GetProperty("autostart").GetBoolean());
            Assert.True(created.RootElement.GetProperty("capacityBytes").GetInt64() > 0);
        }

        (code, output, _) = Run("pool", "list");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Matches(@"NAME\s+STATE\s+AUTOSTART\s+CAPACITY", output);
        Assert.Contains("default", output);
        Assert.Contains(folder, output);

        (code, output, _) = Run("pool", "list", "--json");
        using (var list = JsonDocument.Parse(output))
            Assert.Equal(["default", "lab"], list.RootElement.EnumerateArray().Select(p => p.GetProperty("name").GetString()));

        (code, output, _) = Run("pool", "info", "lab");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("Autostart:  yes", output);

        (code, output, _) = Run("pool", "remove", "lab");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("removed", output);
        Assert.True(Directory.Exists(folder));

        (code, _, err) = Run("pool", "info", "lab");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("'lab'", err);
    }

    [Fact]
    public void Bad_pool_input_is_refused_naming_it()
    {
        var file = Path.Combine(_dir.Path, "file");
        File.WriteAllText(file, "x");

        var (code, _, err) = Run("pool", "create", "p", file);
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains(file, err);
        Assert.Contains("is a file", err);

        (code, _, err) = Run("pool", "create", "p", Path.Combine(_dir.Path, "missing"));
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("does not exist", err);

        (code, _, _) = Run("pool", "create", "p");
        Assert.Equal(ExitCodes.Usage, code);
        (code, _, _) = Run("pool", "frobnicate");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal(["default"], new StoragePoolManager(_manager.Store).List().Select(p => p.Name));
    }

    [Fact]
    public void Vol_create_list_and_remove_refusing_a_volume_a_vm_uses()
    {
        var (code, output, err) = Run("vol", "create", "default", "base.qcow2", "--size", "16M");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Contains("qcow2", output);
        (code, _, err) = Run("vol", "create", "default", "web1.qcow2", "--backing", "base.qcow2", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        (code, _, err) = Run("vol", "create", "default", "data.raw", "--size", "1M", "--format", "raw");
        Assert.True(code == ExitCodes.Ok, err);
        _manager.New(new VmDefinition { Name = "web1", Memory = MemorySettings.Fixed(64L << 20), Disks = new[] { new DiskDefinition(PoolVolumeReference.Format("default", "web1.qcow2"), DiskFormat.Qcow2) } });

        (code, output, _) = Run("vol", "list", "--json");
        Assert.Equal(ExitCodes.Ok, code);
        using (var list = JsonDocument.Parse(output))
        {
            var volumes = list.RootElement.EnumerateArray().ToDictionary(v => v.GetProperty("name").GetString()!);
            Assert.Equal(["base.qcow2", "data.raw", "web1.qcow2"], volumes.Keys.Order());
            Assert.Equal("base.qcow2", volumes["web1.qcow2"].GetProperty("backingVolume").GetString());
            Assert.Equal(16 << 20, volumes["web1.qcow2"].GetProperty("capacityBytes").GetInt64());
            Assert.Equal("web1", volumes["web1.qcow2"].GetProperty("usedBy")[0].GetString());
        }

        (code, output, _) = Run("vol", "list");
        Assert.Matches(@"NAME\s+FORMAT\s+CAPACITY\s+ALLOCATION\s+BACKING\s+USED BY", output);

        (code, _, err) = Run("vol", "remove", "default", "web1.qcow2");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("'web1'", err);
        (code, _, err) = Run("vol", "create", "default", "../x.raw", "--size", "1M");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("../x.raw", err);
        (code, _, _) = Run("vol", "create", "default", "y.raw", "--size", "1M", "--format", "vhdx");
        Assert.Equal(ExitCodes.Usage, code);

        (code, _, err) = Run("vol", "remove", "default", "data.raw");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.False(File.Exists(Path.Combine(_root, "pools", "default", "data.raw")));
    }

    [Fact]
    public void Help_covers_pool_and_vol()
    {
        var (code, output, _) = Run("help", "pool");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("pool create NAME PATH", output.Replace("create NAME PATH", "pool create NAME PATH"));
        (code, output, _) = Run("vol", "--help");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("create POOL NAME", output);
        (_, output, _) = Run("--help");
        Assert.Contains("pool list|create|remove|info", output);
    }

    [Fact]
    public void A_pool_made_by_one_kvmps_process_is_seen_by_the_next()
    {
        var home = Path.Combine(_dir.Path, "home");
        var folder = Path.Combine(_dir.Path, "shared-pool");
        var (code, _, err) = Kvmps(home, "pool", "create", "shared", folder, "--create-path");
        Assert.True(code == ExitCodes.Ok, err);

        (code, var output, err) = Kvmps(home, "pool", "list", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using var list = JsonDocument.Parse(output);
        Assert.Contains(list.RootElement.EnumerateArray(), p => p.GetProperty("name").GetString() == "shared" && p.GetProperty("path").GetString() == folder);
    }

    private static (int Code, string Out, string Err) Kvmps(string home, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add("exec");
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "kvmps.dll"));
        foreach (var arg in args)
            info.ArgumentList.Add(arg);
        info.Environment["KVMPS_HOME"] = home;
        info.Environment["DOTNET_ROLL_FORWARD"] = "Major";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(60_000), "kvmps did not finish");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
