using System.Text.Json;
using KvmPS.Cli;

namespace KvmPS.Cli.Tests;

/// <summary><c>kvmps host pci list</c> and <c>kvmps host sriov set</c> against a fake sysfs tree (KVMPS_SYSFS_ROOT).</summary>
public sealed class HostCliTests : IDisposable
{
    private const string Pf = "0000:03:00.0", Vf = "0000:04:00.0", Plain = "0000:00:1f.0";
    private readonly string _root = Path.Combine("/tmp", "kvmps-sysfs-" + Guid.NewGuid().ToString("N")[..12]);

    public HostCliTests()
    {
        AddFunction(Pf, "0x020000", "ixgbe", totalVfs: 8);
        File.WriteAllText(NumVfs, "1\n");
        AddFunction(Vf, "0x020000", "ixgbevf");
        File.CreateSymbolicLink(Path.Combine(Device(Vf), "physfn"), Device(Pf));
        File.CreateSymbolicLink(Path.Combine(Device(Pf), "virtfn0"), Device(Vf));
        AddFunction(Plain, "0x060100", "lpc_ich");
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Device(string address) => Path.Combine(_root, "bus", "pci", "devices", address);
    private string NumVfs => Path.Combine(Device(Pf), "sriov_numvfs");

    private void AddFunction(string address, string classCode, string driver, int? totalVfs = null)
    {
        var directory = Device(address);
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "vendor"), "0x8086\n");
        File.WriteAllText(Path.Combine(directory, "device"), "0x10fb\n");
        File.WriteAllText(Path.Combine(directory, "class"), classCode + "\n");
        var driverDirectory = Path.Combine(_root, "bus", "pci", "drivers", driver);
        Directory.CreateDirectory(driverDirectory);
        File.CreateSymbolicLink(Path.Combine(directory, "driver"), driverDirectory);
        if (totalVfs is int total)
        {
            File.WriteAllText(Path.Combine(directory, "sriov_totalvfs"), $"{total}\n");
            File.WriteAllText(Path.Combine(directory, "sriov_numvfs"), "0\n");
        }
    }

    private (int Code, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var app = new CliApp(new StringReader(""), output, error, () => throw new InvalidOperationException("host commands need no store"))
        {
            GetEnvironment = name => name == "KVMPS_SYSFS_ROOT" ? _root : null,
        };
        return (app.Run(args), output.ToString(), error.ToString());
    }

    [Fact]
    public void PciListShowsVfCountsAndParents()
    {
        var (code, output, error) = Run("host", "pci", "list");

        Assert.True(code == ExitCodes.Ok, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("ADDRESS", lines[0]);
        Assert.Contains("1/8 VFs", lines.Single(l => l.StartsWith(Pf, StringComparison.Ordinal)));
        Assert.Contains("VF of 03:00.0", lines.Single(l => l.StartsWith(Vf, StringComparison.Ordinal)));
        Assert.EndsWith("-", lines.Single(l => l.StartsWith(Plain, StringComparison.Ordinal)).TrimEnd());
    }

    [Fact]
    public void PciListJsonHasTheSriovFields()
    {
        var (code, output, _) = Run("host", "pci", "list", "--json");

        Assert.Equal(ExitCodes.Ok, code);
        using var json = JsonDocument.Parse(output);
        var vf = json.RootElement.EnumerateArray().Single(e => e.GetProperty("address").GetString() == Vf);
        Assert.Equal(Pf, vf.GetProperty("physicalFunction").GetString());
        var pf = json.RootElement.EnumerateArray().Single(e => e.GetProperty("address").GetString() == Pf);
        Assert.Equal(8, pf.GetProperty("sriovTotalVfs").GetInt32());
        Assert.Equal(1, pf.GetProperty("sriovNumVfs").GetInt32());
    }

    [Fact]
    public void SriovSetWritesTheCount()
    {
        var (code, output, error) = Run("host", "sriov", "set", Pf, "4");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal("4", File.ReadAllText(NumVfs).Trim());
        Assert.StartsWith($"{Pf}: 4 virtual functions (was 1)", output);
    }

    [Theory]
    [InlineData(Pf, "9", ExitCodes.OperationFailed, "asks for 9 virtual functions but it supports at most 8")]
    [InlineData(Plain, "1", ExitCodes.OperationFailed, "not SR-IOV capable")]
    [InlineData("0000:0a:00.0", "1", ExitCodes.OperationFailed, "no such device")]
    [InlineData("bogus", "1", ExitCodes.Usage, "PCI address")]
    [InlineData(Pf, "-1", ExitCodes.Usage, "-1")]
    [InlineData(Pf, "two", ExitCodes.Usage, "not a whole number")]
    public void SriovSetRefusesBadInputNamingIt(string device, string count, int exitCode, string message)
    {
        var (code, _, error) = Run("host", "sriov", "set", device, count);

        Assert.Equal(exitCode, code);
        Assert.Contains(message, error);
        Assert.Equal("1", File.ReadAllText(NumVfs).Trim());
    }

    [Fact]
    public void HelpNamesTheSubcommands()
    {
        var (code, output, _) = Run("host", "--help");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("kvmps host sriov set PF N", output);
        Assert.Contains("host sriov set", Run("--help").Out);
    }
}
