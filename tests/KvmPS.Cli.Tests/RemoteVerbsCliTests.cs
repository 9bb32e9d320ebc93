using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Tests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>
/// The verbs the cmdlets' -HostName runs for the console, file and manifest cmdlets (docs/remote.md): <c>vm log</c>,
/// <c>disk create</c>, <c>export --json</c> and <c>vm screenshot NAME -</c>, in-process over a temporary store (no VMM).
/// </summary>
public sealed class RemoteVerbsCliTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly string _root;
    private readonly VmManager _manager;

    public RemoteVerbsCliTests()
    {
        _root = Path.Combine(_dir.Path, "store");
        _manager = new VmManager(VmStore.Open(_root, allowedPaths: AllowedPaths.StoreOnly(_root)), diskImageCreator: new StorageDiskImageCreator());
    }

    public void Dispose() => _dir.Dispose();

    private (int Code, string Out, string Err) Run(params string[] args) => CliRun.With(_manager, "", args);

    [Fact]
    public void Vm_log_prints_the_serial_log_plain_or_as_json_with_tail()
    {
        _manager.New(TestDefinitions.Minimal("lg"));
        var (code, output, err) = Run("vm", "log", "lg", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using (var never = JsonDocument.Parse(output))
            Assert.Empty(never.RootElement.GetProperty("lines").EnumerateArray());

        File.WriteAllText(_manager.SerialLogPath("lg"), "KvmPS built-in guest\r\nmemory: 64 MiB\nready\n");
        (code, output, err) = Run("vm", "log", "lg");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Equal("KvmPS built-in guest\nmemory: 64 MiB\nready\n", output.Replace("\r\n", "\n"));

        (code, output, _) = Run("vm", "log", "--tail", "2", "--json", "--", "lg");
        Assert.Equal(ExitCodes.Ok, code);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.Equal("lg", json.RootElement.GetProperty("name").GetString());
            Assert.Equal(["memory: 64 MiB", "ready"], json.RootElement.GetProperty("lines").EnumerateArray().Select(l => l.GetString()));
        }

        Assert.Equal(ExitCodes.VmNotFound, Run("vm", "log", "nosuch").Code);
        (code, _, err) = Run("vm", "log", "lg", "--tail", "-1");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--tail", err);
    }

    [Fact]
    public void Disk_create_makes_an_image_once_and_refuses_what_cannot_be_made_naming_the_option()
    {
        var path = Path.Combine(_dir.Path, "images", "a.qcow2");
        var (code, output, err) = Run("disk", "create", path, "--size", "8M", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.Equal(path, json.RootElement.GetProperty("path").GetString());
            Assert.Equal("qcow2", json.RootElement.GetProperty("format").GetString());
            Assert.Equal(8L << 20, json.RootElement.GetProperty("sizeBytes").GetInt64());
            Assert.True(json.RootElement.GetProperty("fileSizeBytes").GetInt64() < 8L << 20);
            Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("backingPath").ValueKind);
        }
        Assert.True(File.Exists(path));

        // An overlay takes the size of its backing image.
        var overlay = Path.Combine(_dir.Path, "images", "b.qcow2");
        (code, output, err) = Run("disk", "create", overlay, "--backing", path, "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.Equal(8L << 20, json.RootElement.GetProperty("sizeBytes").GetInt64());
            Assert.Equal(path, json.RootElement.GetProperty("backingPath").GetString());
        }

        var before = File.ReadAllBytes(path);
        (code, _, err) = Run("disk", "create", path, "--size", "1M");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("already exists", err);
        Assert.Equal(before, File.ReadAllBytes(path));

        (code, _, err) = Run("disk", "create", Path.Combine(_dir.Path, "odd.img"), "--size", "1000B");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--size", err);
        (code, _, err) = Run("disk", "create", Path.Combine(_dir.Path, "nosize.img"));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--size", err);
        (code, _, err) = Run("disk", "create", Path.Combine(_dir.Path, "r.img"), "--format", "raw", "--backing", path);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--backing", err);
        Assert.False(File.Exists(Path.Combine(_dir.Path, "odd.img")) || File.Exists(Path.Combine(_dir.Path, "r.img")));
    }

    [Fact]
    public void Disk_create_with_a_pool_makes_a_volume_there()
    {
        var (code, output, err) = Run("disk", "create", "v.img", "--pool", "default", "--size", "1M", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using var json = JsonDocument.Parse(output);
        var path = json.RootElement.GetProperty("path").GetString()!;
        Assert.StartsWith(_root, path);
        Assert.Equal("raw", json.RootElement.GetProperty("format").GetString());
        Assert.True(File.Exists(path));
        (code, _, err) = Run("disk", "create", "../x.img", "--pool", "default", "--size", "1M");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("volume name", err);
    }

    [Fact]
    public void Export_json_carries_the_manifest_and_the_names_that_matched_none()
    {
        _manager.New(TestDefinitions.Minimal("ex-a"));
        _manager.New(TestDefinitions.Minimal("ex-b"));
        var (code, output, err) = Run("export", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using (var json = JsonDocument.Parse(output))
        {
            var manifest = json.RootElement.GetProperty("manifest").GetString()!;
            Assert.Matches(@"Name\s+= 'ex-a'", manifest);
            Assert.Matches(@"Name\s+= 'ex-b'", manifest);
            Assert.Equal(["ex-a", "ex-b"], json.RootElement.GetProperty("vms").EnumerateArray().Select(v => v.GetString()).Order());
            Assert.Empty(json.RootElement.GetProperty("notFound").EnumerateArray());
        }

        (code, output, _) = Run("export", "--json", "--", "ex-a", "nosuch");
        Assert.Equal(ExitCodes.VmNotFound, code);
        using (var json = JsonDocument.Parse(output))
        {
            Assert.Equal(["nosuch"], json.RootElement.GetProperty("notFound").EnumerateArray().Select(v => v.GetString()));
            Assert.DoesNotContain("ex-b", json.RootElement.GetProperty("manifest").GetString());
        }

        (code, _, err) = Run("export", "--json", "-o", Path.Combine(_dir.Path, "m.psd1"));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("-o", err);
    }

    [Fact]
    public void An_exported_manifest_with_a_host_name_added_reads_back_as_that_hosts()
    {
        _manager.New(TestDefinitions.Minimal("ex-h"));
        var (_, output, _) = Run("export", "--json");
        using var json = JsonDocument.Parse(output);
        var text = KvmPS.Management.DesiredState.ManifestExporter.WithHostName(json.RootElement.GetProperty("manifest").GetString()!, "h2");
        var state = KvmPS.Management.DesiredState.DesiredStateReader.Parse(text, "h2.psd1", hostNameAllowed: true);
        Assert.Equal(["ex-h"], state.Vms.Select(v => v.Name));
        var file = Path.Combine(_dir.Path, "h2.psd1");
        File.WriteAllText(file, text);
        Assert.Equal("h2", KvmPS.Management.Remote.ManifestHost.Read(file)?.HostName);
    }

    [Fact]
    public void Screenshot_to_the_answer_needs_json()
    {
        _manager.New(TestDefinitions.Minimal("sc"));
        var (code, _, err) = Run("vm", "screenshot", "sc", "-");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("--json", err);
        // With --json the VM is checked as for a file: this one has no display.
        (code, _, err) = Run("vm", "screenshot", "sc", "-", "--json");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("has no display", err);
    }
}
