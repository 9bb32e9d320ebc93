using System.Globalization;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Cli;

/// <summary>
/// <c>kvmps vm upgrade NAME...|--all [--timeout SECONDS] [--json]</c>: local live upgrade (Update-KvmVmm's twin). Each VM
/// moves into a new kvmps-vmm started from the binary on disk while its guest runs on; a VM whose upgrade fails stays in
/// its old VMM, the others go on, and the exit status says a failure happened (4).
/// </summary>
internal sealed class VmUpgradeCommand(CliApp app)
{
    public int Run(ParsedArgs options)
    {
        if (options.Help)
            throw new CliApp.HelpRequested("vm upgrade");
        var all = options.Has("--all");
        if (all == (options.Positional.Count > 0))
            throw new UsageException("vm upgrade: usage: kvmps vm upgrade NAME... | --all [--timeout SECONDS] [--json]");
        TimeSpan? timeout = null;
        if (options.Value("--timeout") is { } text)
        {
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) || seconds is < 1 or > 3600)
                throw new UsageException($"vm upgrade: --timeout '{text}' is not a number of seconds from 1 to 3600");
            timeout = TimeSpan.FromSeconds(seconds);
        }
        // --all: the VMs running now; names: each one as given (a missing or stopped one is its own error).
        var names = all
            ? app.Manager.List().Where(v => v.State == VmState.Running).Select(v => v.Definition.Name).ToList()
            : options.Positional.ToList();

        var results = new List<(string Name, VmUpgradeResult? Result, Exception? Error)>();
        foreach (var name in names)
        {
            try
            {
                results.Add((name, app.Manager.Upgrade(name, timeout), null));
            }
            catch (Exception e) when (e is VmManagementException or KvmPS.Management.Store.VmStoreException)
            {
                results.Add((name, null, e));
            }
        }

        if (options.Has("--json"))
        {
            app.Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var (name, result, error) in results)
                {
                    w.WriteStartObject();
                    w.WriteString("name", name);
                    w.WriteBoolean("upgraded", result is not null);
                    if (result is not null)
                    {
                        w.WriteNumber("old_pid", result.OldPid);
                        w.WriteNumber("new_pid", result.NewPid);
                        w.WriteString("binary", result.BinaryPath);
                        w.WriteBoolean("memory_shared", result.MemoryShared);
                        w.WriteNumber("total_ms", (long)result.Total.TotalMilliseconds);
                        if (result.Downtime is { } d)
                            w.WriteNumber("downtime_ms", (long)d.TotalMilliseconds);
                    }
                    if (error is not null)
                        w.WriteString("error", error.Message);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }));
        }
        else
        {
            foreach (var (name, result, error) in results)
            {
                if (result is not null)
                    app.Out.WriteLine($"VM '{name}': kvmps-vmm pid {result.OldPid} -> {result.NewPid} ({(result.MemoryShared ? "memory passed, not copied" : "memory copied")}, " +
                        $"total {result.Total.TotalMilliseconds:0} ms{(result.Downtime is { } d ? $", downtime {d.TotalMilliseconds:0} ms" : "")}).");
                else
                    app.Err.WriteLine($"kvmps: {error!.Message}");
            }
            if (all && names.Count == 0)
                app.Out.WriteLine("No VM is running: nothing to upgrade.");
        }
        if (results.Any(r => r.Error is KvmPS.Management.Store.VmNotFoundException) && results.Count == 1)
            return ExitCodes.VmNotFound;
        return results.Any(r => r.Error is not null) ? ExitCodes.OperationFailed : ExitCodes.Ok;
    }
}
