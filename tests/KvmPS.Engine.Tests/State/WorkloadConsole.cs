using System.Text.RegularExpressions;

namespace KvmPS.Engine.Tests.State;

/// <summary>
/// Reading the built-in guest's serial log in the snapshot tests: the `work` workload's "work: count N" lines, and
/// waiting for the log to reach a state.
/// </summary>
internal static partial class WorkloadConsole
{
    [GeneratedRegex(@"^work: count (\d+)\r?\n", RegexOptions.Multiline)]
    public static partial Regex CountLine();

    public static string ReadText(string path) => File.Exists(path) ? File.ReadAllText(path) : "";

    /// <summary>Polls <paramref name="path"/> every 50 ms until <paramref name="condition"/> holds or the time is up.</summary>
    public static bool WaitForFile(string path, Func<string, bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (condition(ReadText(path))) return true;
            Thread.Sleep(50);
        }
        return condition(ReadText(path));
    }

    public static int Occurrences(string text, string what) => Regex.Matches(text, Regex.Escape(what)).Count;
}
