using System.Diagnostics;
using System.Text.Json;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>
/// The real <c>kvmps</c> process run inside a network namespace the test makes (<c>ip netns exec NS dotnet kvmps.dll …</c>,
/// KVMPS_HOME a temporary store): the production code path with no test hook. <c>kvmps autostart</c> starts a network
/// with autostart, and its dnsmasq outlives the kvmps process that started it. Category NetNamespace (root, iproute2,
/// nftables, dnsmasq).
/// </summary>
[Trait("Category", "NetNamespace")]
public sealed class NetAutostartProcessTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly string _ns = "kvt-" + Guid.NewGuid().ToString("N")[..8];

    public NetAutostartProcessTests()
    {
        Exec("ip", "netns", "add", _ns);
        Exec("ip", "-n", _ns, "link", "set", "lo", "up");
    }

    public void Dispose()
    {
        foreach (var pid in Exec("ip", "netns", "pids", _ns).Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            if (int.TryParse(pid, out var p))
                try { Process.GetProcessById(p).Kill(); } catch (ArgumentException) { } catch (InvalidOperationException) { }
        Exec("ip", "netns", "del", _ns);
        _dir.Dispose();
    }

    private static (int Code, string Out, string Err) Exec(params string[] argv)
    {
        var info = new ProcessStartInfo(argv[0]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in argv.Skip(1))
            info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(60_000), $"{string.Join(' ', argv)} did not finish");
        return (process.ExitCode, output.Result, error.Result);
    }

    private (int Code, string Out, string Err) Kvmps(params string[] args)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "netns", "exec", _ns, "dotnet", Path.Combine(AppContext.BaseDirectory, "kvmps.dll") }.Concat(args))
            info.ArgumentList.Add(a);
        info.Environment["KVMPS_HOME"] = Path.Combine(_dir.Path, "store");
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(60_000), "kvmps did not finish");
        return (process.ExitCode, output.Result, error.Result);
    }

    /// <summary>Alive and not a zombie (PID 1 here may not reap): the state field after the last ')' of /proc/PID/stat.</summary>
    private static bool IsRunning(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[stat.LastIndexOf(')') + 2] is not ('Z' or 'X');
        }
        catch (IOException)
        {
            return false;
        }
    }

    [Fact]
    public void Autostart_starts_the_network_and_dnsmasq_outlives_kvmps()
    {
        var bridge = "kvt" + Guid.NewGuid().ToString("N")[..8];
        var (code, _, err) = Kvmps("net", "create", "lab", "--mode", "nat", "--bridge", bridge, "--subnet", "10.231.9.0/24", "--autostart");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.False(Exec("ip", "-n", _ns, "link", "show", "dev", bridge).Code == 0);

        string output;
        (code, output, err) = Kvmps("autostart");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Contains("network lab: started", output);
        Assert.Contains("No VMs have Autostart set.", output);
        (code, output, err) = Kvmps("autostart");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Contains("network lab: already active", output);

        // A new kvmps process (the one that started dnsmasq has exited) sees the network up.
        (code, output, err) = Kvmps("net", "show", "lab", "--json");
        Assert.True(code == ExitCodes.Ok, err);
        using var json = JsonDocument.Parse(output);
        Assert.Equal("Active", json.RootElement.GetProperty("state").GetString());
        var pid = json.RootElement.GetProperty("dnsmasqPid").GetInt32();
        Assert.True(IsRunning(pid));
        Assert.Contains("inet 10.231.9.1/24", Exec("ip", "-n", _ns, "-4", "addr", "show", "dev", bridge).Out);

        (code, _, err) = Kvmps("net", "stop", "lab");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.False(IsRunning(pid));
        Assert.NotEqual(0, Exec("ip", "-n", _ns, "link", "show", "dev", bridge).Code);
    }

    [Fact]
    public void Autostart_reports_a_network_that_cannot_start_and_fails()
    {
        // A non-KvmPS interface already holds the bridge name: the network cannot come up, and autostart says so.
        var bridge = "kvt" + Guid.NewGuid().ToString("N")[..8];
        var (code, _, err) = Kvmps("net", "create", "lab", "--mode", "nat", "--bridge", bridge, "--subnet", "10.231.10.0/24", "--autostart");
        Assert.True(code == ExitCodes.Ok, err);
        Assert.Equal(0, Exec("ip", "-n", _ns, "link", "add", bridge, "type", "veth", "peer", "name", bridge + "p").Code);

        string output;
        (code, output, err) = Kvmps("autostart");

        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("network lab: FAILED: ", output);
        Assert.Contains(bridge, output);
    }
}
