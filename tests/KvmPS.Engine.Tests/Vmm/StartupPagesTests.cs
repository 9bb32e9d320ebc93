using System.Globalization;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vmm;
using Xunit;

namespace KvmPS.Engine.Tests.Vmm;

/// <summary>
/// A VMM drops the pages of its loaded objects' read-only segments once its VM has run a moment (docs/benchmarks.md,
/// figure 3): only pages that hold file content, never one the process wrote.
/// </summary>
[Collection("vmm-process")]
public class StartupPagesTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private sealed record Mapping(ulong Start, ulong End, string Permissions, ulong Offset, string Path);

    private static List<Mapping> Maps(string pid) =>
    [
        .. File.ReadLines($"/proc/{pid}/maps").Select(line =>
        {
            var f = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            var range = f[0].Split('-');
            return new Mapping(ulong.Parse(range[0], NumberStyles.HexNumber), ulong.Parse(range[1], NumberStyles.HexNumber), f[1],
                ulong.Parse(f[2], NumberStyles.HexNumber), f.Length > 5 ? f[5].Trim() : "");
        }),
    ];

    [Fact]
    public void EveryRangeIsWholePagesOfAReadOnlyFileMapping()
    {
        var ranges = StartupPages.ReadOnlySegments();
        var maps = Maps("self");
        ulong page = (ulong)Environment.SystemPageSize;
        Assert.NotEmpty(ranges);
        foreach (var range in ranges)
        {
            ulong start = range.Start, end = range.Start + range.Length;
            Assert.True(start % page == 0 && end % page == 0, $"0x{start:x}-0x{end:x} is not whole pages");
            // Covered, page by page, by mappings of a file that are neither writable nor ever were (no RELRO page).
            for (ulong at = start; at < end;)
            {
                var m = maps.FirstOrDefault(m => m.Start <= at && at < m.End);
                Assert.True(m is not null, $"0x{at:x} (in 0x{start:x}-0x{end:x}) is not mapped");
                Assert.True(m.Permissions[1] == '-' && m.Path.StartsWith('/'), $"0x{start:x}-0x{end:x} covers {m.Permissions} {m.Path}");
                at = m.End;
            }
        }
        // libc's code is among them (less a last page it may share with a writable neighbour); the vDSO is not: no file.
        Assert.Contains(maps, m => m.Path.Contains("libc.so", StringComparison.Ordinal) && m.Permissions.StartsWith("r-x", StringComparison.Ordinal)
            && ranges.Any(r => r.Start == m.Start && m.End - (r.Start + r.Length) <= page));
        Assert.DoesNotContain(maps, m => m.Path == "[vdso]" && ranges.Any(r => r.Start < m.End && m.Start < r.Start + r.Length));
    }

    [Fact]
    public void AnIdleVmmHoldsLittleOfItsCodeAndStillAnswers()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess(["--serial", "none", "--control-socket", sock]);
        using (var client = new ControlClient(sock, Timeout)) client.WaitForState("Running", Timeout);
        Thread.Sleep(StartupPages.Delay + TimeSpan.FromMilliseconds(700));
        // Start-up maps most of the binary's code (5.3 MB of 5.6 MB measured); idle, it is faulted back only where run.
        long codeKiB = CodeResidentKiB(vmm.Pid);
        Assert.True(codeKiB < 2048, $"kvmps-vmm's code holds {codeKiB} KiB resident a moment after start-up");
        try
        {
            using var client = new ControlClient(sock, Timeout);
            client.Ok("describe");
            // The guest powers off on the ACPI button: its vCPU thread ends the VM and wakes the main thread's read(2).
            Assert.Equal("PoweredOff", client.Ok("stop", "\"graceful\": true, \"timeout_ms\": 30000").GetProperty("outcome").GetString());
        }
        catch (IOException e) { Assert.Fail($"{e.Message}; the VMM's exit: {vmm.WaitForExit(TimeSpan.FromSeconds(2))}, its stderr: {vmm.Stderr}"); }
        Assert.Equal(VmmExitCode.Ok, vmm.WaitForExit(Timeout));
        Assert.DoesNotContain("sandbox violation", vmm.Stderr);
    }

    [Fact]
    public void ControlRequestsBringCodeBackAndAQuietSecondDropsItAgain()
    {
        using var dir = new TempDir();
        string sock = dir.File("c.sock");
        using var vmm = new VmmProcess(["--serial", "none", "--control-socket", sock]);
        using var client = new ControlClient(sock, Timeout);
        client.WaitForState("Running", Timeout);
        Thread.Sleep(StartupPages.Delay + TimeSpan.FromMilliseconds(700));
        long idle = CodeResidentKiB(vmm.Pid);
        client.Ok("describe");
        client.Ok("status");
        long busy = CodeResidentKiB(vmm.Pid);
        Assert.True(busy > idle, $"two control requests faulted no code back in ({idle} KiB before, {busy} KiB after)");
        Thread.Sleep(StartupPages.IdleDelay + TimeSpan.FromMilliseconds(700));
        long again = CodeResidentKiB(vmm.Pid);
        Assert.True(again <= idle + (busy - idle) / 4, $"kvmps-vmm's code: {idle} KiB idle, {busy} KiB after two requests, {again} KiB a quiet second later");
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString()); // and it still answers
        Assert.DoesNotContain("sandbox violation", vmm.Stderr);
    }

    private static long CodeResidentKiB(int pid)
    {
        long kib = 0;
        bool inCode = false;
        foreach (string line in File.ReadLines($"/proc/{pid}/smaps"))
        {
            if (char.IsAsciiHexDigit(line[0]) && line.Contains('-'))
                inCode = line.Contains(" r-xp ", StringComparison.Ordinal) && line.EndsWith("kvmps-vmm", StringComparison.Ordinal);
            else if (inCode && line.StartsWith("Rss:", StringComparison.Ordinal))
                kib += long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
        }
        Assert.True(kib > 0, "no resident code mapping of kvmps-vmm found");
        return kib;
    }
}
