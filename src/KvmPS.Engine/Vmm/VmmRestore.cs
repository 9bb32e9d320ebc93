using KvmPS.State;
using KvmPS.Vm;

namespace KvmPS.Vmm;

/// <summary>
/// <c>kvmps-vmm --restore DIR [--paused] [--restore-memory private|copy]</c>: the machine comes from the snapshot's
/// config.json; only per-process flags (control socket, serial, crash policy, debug console) may be given beside it.
/// </summary>
public sealed record VmmRestore(LoadedSnapshot Snapshot, bool Paused, RestoreMemoryMode MemoryMode)
{
    private static readonly string[] AllowedFlags = ["--control-socket", "--serial", "--serial-log-max", "--serial-log-files", "--on-crash", "--debugcon"];

    /// <summary>
    /// Takes the restore flags out of <paramref name="args"/>. Returns null (and the args unchanged) without --restore;
    /// otherwise the snapshot (read and checked) and the arguments for <see cref="VmmConfig.FromArgs"/>, with the
    /// snapshot's config.json as --config. A bad snapshot is a <see cref="SnapshotException"/> naming the file.
    /// </summary>
    public static VmmRestore? FromArgs(string[] args, out string[] configArgs)
    {
        string? dir = null, memory = null;
        bool paused = false;
        var rest = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            string flag = a;
            string? inline = null;
            int eq = a.IndexOf('=');
            if (a.StartsWith("--", StringComparison.Ordinal) && eq > 0) { flag = a[..eq]; inline = a[(eq + 1)..]; }
            string Value() => inline ?? (i + 1 < args.Length ? args[++i] : throw new VmmConfigException($"{flag} needs a value."));
            switch (flag)
            {
                case "--restore": dir = Value(); break;
                case "--paused": paused = true; break;
                case "--restore-memory": memory = Value(); break;
                default:
                    rest.Add(a);
                    break;
            }
        }
        configArgs = rest.ToArray();
        if (dir is null)
        {
            if (paused || memory is not null) throw new VmmConfigException("--paused and --restore-memory need --restore DIR.");
            return null;
        }
        var mode = memory switch
        {
            null or "private" => RestoreMemoryMode.Private,
            "copy" => RestoreMemoryMode.Copy,
            _ => throw new VmmConfigException($"--restore-memory: '{memory}' is not private or copy."),
        };
        for (int i = 0; i < rest.Count; i++)
        {
            string flag = rest[i].Split('=')[0];
            if (flag is "--help" or "-h" or "--version") continue;
            if (Array.IndexOf(AllowedFlags, flag) < 0)
                throw new VmmConfigException($"{flag} cannot be combined with --restore (the snapshot's config.json defines the machine; allowed: {string.Join(", ", AllowedFlags)}).");
            if (!rest[i].Contains('=')) i++;
        }
        var snapshot = SnapshotDirectory.Open(dir);
        Diagnostics.StartupTimeline.Mark("snapshot");
        // Before the machine opens the disks and before any vCPU runs: each qcow2 disk goes back to the internal
        // snapshot taken with this one (a disk that lost it, or has another one under its ID, is refused).
        SnapshotDiskFile.CheckAndRevert(snapshot.Disks);
        Diagnostics.StartupTimeline.Mark("disks");
        configArgs = ["--config", snapshot.ConfigPath, .. rest];
        return new VmmRestore(snapshot, paused, mode);
    }
}
