using System.Globalization;
using System.Text.Json;

namespace KvmPS.Management.Remote;

/// <summary>One VM's live upgrade on a remote host (<c>kvmps vm upgrade --json</c>'s array entry).</summary>
public sealed record RemoteUpgradeResult(string Name, bool Upgraded, int? OldPid, int? NewPid, bool MemoryShared, long? TotalMs, long? DowntimeMs, string? Error);

/// <summary>Checkpoints and live upgrades on the remote host (Checkpoint-KvmVm and Update-KvmVmm -HostName).</summary>
public sealed partial class RemoteKvmps
{
    /// <summary>
    /// <c>kvmps vm upgrade --json</c> there for <paramref name="names"/> (null: every running VM, <c>--all</c>). A VM whose
    /// upgrade failed is an entry with <see cref="RemoteUpgradeResult.Error"/> (it runs on in its old VMM there).
    /// </summary>
    public IReadOnlyList<RemoteUpgradeResult> Upgrade(IReadOnlyList<string>? names, TimeSpan? timeout)
    {
        var arguments = new List<string> { "vm", "upgrade", "--json" };
        if (timeout is { } t)
            arguments.AddRange(["--timeout", ((int)Math.Ceiling(t.TotalSeconds)).ToString(CultureInfo.InvariantCulture)]);
        if (names is null)
            arguments.Add("--all");
        else
            arguments.AddRange(["--", .. names]);
        // Exit 4 still prints the array: one VM's failure does not stop the others.
        using var json = RunJson(arguments, answeredExitCodes: [4]);
        if (json.RootElement.ValueKind != JsonValueKind.Array)
            throw new RemoteProtocolException(Target.ToString(), "'vm upgrade --json' did not print an array");
        return json.RootElement.EnumerateArray().Select(e => new RemoteUpgradeResult(
            e.GetProperty("name").GetString()!,
            e.GetProperty("upgraded").GetBoolean(),
            e.TryGetProperty("old_pid", out var o) ? o.GetInt32() : null,
            e.TryGetProperty("new_pid", out var n) ? n.GetInt32() : null,
            e.TryGetProperty("memory_shared", out var m) && m.GetBoolean(),
            e.TryGetProperty("total_ms", out var tm) ? tm.GetInt64() : null,
            e.TryGetProperty("downtime_ms", out var d) ? d.GetInt64() : null,
            e.TryGetProperty("error", out var err) ? err.GetString() : null)).ToList();
    }

    /// <summary>
    /// <c>kvmps vm snapshot create --json</c> there: the checkpoint as that kvmps describes it (name, id, type, ...), with
    /// <c>host</c> added. The caller disposes it.
    /// </summary>
    public JsonDocument Checkpoint(string name, string? snapshotName, bool allowRawDisks, bool incremental)
    {
        var arguments = new List<string> { "vm", "snapshot", "create", "--json" };
        if (allowRawDisks)
            arguments.Add("--allow-raw-disks");
        if (incremental)
            arguments.Add("--incremental");
        arguments.AddRange(["--", name]);
        if (snapshotName is not null)
            arguments.Add(snapshotName);
        return RunJson(arguments);
    }

    /// <summary><c>kvmps vm snapshot restore --json</c> there: the VM goes back to <paramref name="snapshotName"/>; its state after.</summary>
    public RemoteVmInfo RestoreSnapshot(string name, string snapshotName) => OneVm(["vm", "snapshot", "restore", "--json", "--", name, snapshotName]);

    /// <summary>
    /// <c>kvmps vm console NAME</c> there with this process's terminal (ssh -t): the remote console's own keys (Ctrl-]
    /// detaches) and messages. A non-zero status is a <see cref="RemoteCommandFailedException"/> (5: no such VM); its
    /// message was printed on the terminal, where the remote kvmps's output goes.
    /// </summary>
    public void Console(string name, bool replay)
    {
        var code = transport.RunInteractive(Target, replay ? ["vm", "console", "--", name] : ["vm", "console", "--no-replay", "--", name]);
        if (code != 0)
            throw new RemoteCommandFailedException(Target.ToString(), code, $"'kvmps vm console {name}' ended with an error (its message is above)");
    }
}
