using System.Text.RegularExpressions;

namespace KvmPS.Management.Tests.TestSupport;

/// <summary>
/// The built-in guest's "work" workload as its serial log shows it: one "work: count N" line per round. The guest
/// writes a byte at a time, so a pause (a checkpoint, a kill, a move) can fall inside a line, and the next VMM's
/// output is appended to the same file: only whole lines count, so a line two processes wrote parts of does not.
/// </summary>
internal static partial class WorkloadLog
{
    public const string Cmdline = "kvmps.run=work 4";

    [GeneratedRegex(@"^work: count (\d+)\r?\n", RegexOptions.Multiline)]
    private static partial Regex CountLine();

    /// <summary>The counts of the whole lines in <paramref name="text"/>, in order.</summary>
    public static List<long> Counts(string text) => CountLine().Matches(text).Select(m => long.Parse(m.Groups[1].Value)).ToList();

    /// <summary>The VM's serial log ("" before it exists).</summary>
    public static string Serial(this LifecycleSandbox sandbox, string name)
    {
        var path = sandbox.Store.SerialLogPath(name);
        return File.Exists(path) ? File.ReadAllText(path) : "";
    }

    /// <summary>
    /// True when <paramref name="text"/> ends inside a line: the guest was stopped while writing one, and the next
    /// process's first whole line is the one after it.
    /// </summary>
    public static bool EndsInsideALine(string text) => text.Length > 0 && text[^1] != '\n';

    public static void WaitForCount(this LifecycleSandbox sandbox, string name, long atLeast, double seconds = 60)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (Counts(sandbox.Serial(name)) is var counts && (counts.Count == 0 || counts[^1] < atLeast))
        {
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"'work: count {atLeast}' did not appear: {sandbox.Serial(name)}");
            Thread.Sleep(50);
        }
    }
}
