using System.Text;

namespace KvmPS.Bench;

/// <summary>The benchmark table on stdout, and docs/benchmarks.md (table + host + command; the reading is kept by hand below a marker).</summary>
public static class Report
{
    public const string ReadingMarker = "<!-- reading: kept across regenerations -->";

    public static string Table(IReadOnlyList<FigureResult> results)
    {
        var sb = new StringBuilder();
        sb.AppendLine("| # | figure | KvmPS min / median / max | peer | peer min / median / max | KvmPS ÷ peer (median) | goal |");
        sb.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var r in results)
        {
            string k = r.KvmPS?.Format(r.Unit) ?? "—";
            string p = r.Peer?.Format(r.Unit) ?? "—";
            string ratio = r.Ratio is double x ? (r.Note is null ? $"{x:F2}" : $"{x:F2} ({r.Note})") : r.Note ?? "—";
            sb.AppendLine($"| {r.Id} | {r.Title} | {k} | {r.PeerName} | {p} | {ratio} | {r.Goal} |");
        }
        return sb.ToString();
    }

    private const string Figure7Method = "7. the RealLinux test guest (`tools/linux-guest`: Linux 6.1 from Debian's source, busybox initramfs, the command line in `tools/linux-guest/cmdline`) on both VMMs with the same files; exec → the agent's `@agent 0 ready` line on the serial console. kvmps-vmm boots the ELF vmlinux through its entry point, QEMU `-M pc` through PVH. At most 3 runs, interleaved; date and runs of this figure are in the row's note when it was updated alone (`--figures 7`).";

    /// <summary>
    /// A partial run (<c>--figures</c>): replaces the rows of the figures it measured (by id), appends new ones at the
    /// end of the table, and adds a method line it lacks; the rest of the file stays as the last full run left it.
    /// </summary>
    public static void UpdateRows(string path, IReadOnlyList<FigureResult> results)
    {
        if (!File.Exists(path)) { WriteMarkdown(path, results, Table(results), results.FirstOrDefault()?.KvmPS?.Runs ?? 0); return; }
        var lines = File.ReadAllLines(path).ToList();
        int header = lines.FindIndex(l => l.StartsWith("| # | figure"));
        if (header < 0) throw new InvalidDataException($"{path} has no benchmark table to update");
        int end = header + 2;
        while (end < lines.Count && lines[end].StartsWith("| ")) end++;
        var newRows = Table(results).Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(2).ToList();
        var ids = results.Select(r => r.Id).ToHashSet();
        var kept = lines.Skip(header + 2).Take(end - header - 2).Where(l => !ids.Contains(l.Split('|')[1].Trim())).ToList();
        string stamp = $" (updated alone {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC)";
        newRows = newRows.Select(r => r.TrimEnd().EndsWith(" |") ? r.TrimEnd()[..^2] + stamp + " |" : r).ToList();
        lines.RemoveRange(header + 2, end - header - 2);
        lines.InsertRange(header + 2, kept.Concat(newRows));
        AddMethodLine(lines, ids, "7", "6. ", Figure7Method);
        AddMethodLine(lines, ids, "8", "7. ", Snapshots.Method);
        AddMethodLine(lines, ids, "9", "8. ", Hotplug.Method);
        AddMethodLine(lines, ids, "10", "9. ", LiveMigration.Method);
        AddMethodLine(lines, ids, "11", "10. ", VncWatch.Method);
        File.WriteAllLines(path, lines);
    }

    /// <summary>Adds figure <paramref name="figure"/>'s method line after the previous one's, unless it is there; an old one is replaced.</summary>
    private static void AddMethodLine(List<string> lines, HashSet<string> ids, string figure, string previous, string method)
    {
        if (!ids.Any(id => id.StartsWith(figure, StringComparison.Ordinal))) return;
        int at = lines.FindIndex(l => l.StartsWith(figure + ". ", StringComparison.Ordinal));
        if (at >= 0) { lines[at] = method; return; }
        int before = lines.FindIndex(l => l.StartsWith(previous, StringComparison.Ordinal));
        if (before < 0)
        {
            // Otherwise after the last method line above the reading (never inside the hand-kept part).
            int reading = lines.IndexOf(ReadingMarker);
            before = lines.FindLastIndex(reading >= 0 ? reading : lines.Count - 1, l => l.Length > 2 && char.IsAsciiDigit(l[0]) && l.Contains(". "));
        }
        lines.Insert(before >= 0 ? before + 1 : lines.Count, method);
    }

    public static void WriteMarkdown(string path, IReadOnlyList<FigureResult> results, string table, int runs)
    {
        string reading = "";
        if (File.Exists(path))
        {
            string old = File.ReadAllText(path);
            int at = old.IndexOf(ReadingMarker, StringComparison.Ordinal);
            if (at >= 0) reading = old[(at + ReadingMarker.Length)..];
        }
        var sb = new StringBuilder();
        sb.AppendLine("# Benchmarks: KvmPS against QEMU on the same host");
        sb.AppendLine();
        sb.AppendLine($"Measured {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC with `./build.sh bench --runs {runs}` (min / median / max over {runs} runs each, after one unrecorded warm-up run).");
        sb.AppendLine();
        sb.AppendLine($"Host: {Host.HostDescription()}.");
        sb.AppendLine();
        sb.AppendLine("Both VMMs boot the same guest: the project's built-in guest (`guest/`), entered by kvmps-vmm through the 64-bit Linux boot protocol and by QEMU through its PVH entry. QEMU is Debian's `qemu-system-x86_64` with `-accel kvm -nodefaults` and its default CPU model (`-cpu host` cannot set MSR 0x10a under PVM).");
        sb.AppendLine();
        sb.Append(table);
        sb.AppendLine();
        sb.AppendLine("How each figure is taken:");
        sb.AppendLine("1. exec of the VMM → the first byte of guest console output read from its stdout (a pipe). 1j and 3j: the same as 1 and 3 with kvmps-vmm jailed (`--jail on --user kvmps --cgroup kvmps/bench`: a private root in its own mount namespace, the `kvmps` user, no capabilities, its own cgroup; docs/confinement.md); the seccomp filters are on in every figure.");
        sb.AppendLine("2. exec → the first successful connect on the control socket that gets an answer (kvmps-vmm: a `ping` reply; QEMU: the QMP greeting). CPU time is the sum of all the process's threads' `/proc/PID/task/*/schedstat` at that moment.");
        sb.AppendLine("3. with the guest idle at its prompt, 1.5 s after it printed it (kvmps-vmm drops its start-up pages 1 s after its VM starts; the same wait for QEMU): `/proc/PID/smaps` total RSS minus the RSS of the guest-RAM mapping (the largest anonymous mapping of at least 256 MiB); 3p counts only Private_Clean + Private_Dirty, i.e. without file pages shared with other processes.");
        sb.AppendLine("4. kvmps-vmm: the guest's `pio N` command (N `out` instructions to port 0x80, handled in userspace), host-side time between its echo and its completion line, for 2N minus N exits; the C loop: `bench/KvmPS.Bench/Native/pio_loop.c`, a bare `KVM_RUN` loop around a 64-bit guest running the same three instructions per exit (`out; dec ecx; jnz`), which the built-in guest's `pio` loop also runs, since guest instructions are emulated on this host and must not differ.");
        sb.AppendLine("5. one boot per VMM and image format (a 64 MiB image of random data; qcow2 made from it by `qemu-img convert`), then per sample the guest's `blk bench 2000`: 2000 sequential 4 KiB reads, one virtio-blk request each, through the same guest driver (QEMU: `-M pc`, `virtio-blk-pci,disable-legacy=on`). VMM CPU is the CPU time of the process's threads other than the vCPUs, divided by the requests; the rate is requests over the host-observed time of the command. The guest's driver code is emulated on this host, which caps the rate for both.");
        sb.AppendLine("6. 20 VMMs started at once, 128 MiB each; time until every one has printed its first console byte.");
        sb.AppendLine(Figure7Method);
        sb.AppendLine(Snapshots.Method);
        sb.AppendLine(Hotplug.Method);
        sb.AppendLine(LiveMigration.Method);
        sb.AppendLine(VncWatch.Method);
        sb.AppendLine();
        sb.AppendLine(ReadingMarker);
        sb.Append(reading.Length > 0 ? reading : "\n## Reading\n\n(to be written after the first run)\n");
        File.WriteAllText(path, sb.ToString());
    }
}
