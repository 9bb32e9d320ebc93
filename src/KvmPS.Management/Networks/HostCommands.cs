using System.Diagnostics;
using System.Text.Json;

namespace KvmPS.Management.Networks;

/// <summary>
/// Runs the host tools a network needs (<c>ip</c>, <c>nft</c>, <c>sysctl</c>, <c>dnsmasq</c>), every one through here
/// so that every change to the host's network is in one place. <see cref="NetworkNamespace"/> (tests only) runs each
/// under <c>ip netns exec NS</c>: the code path is the production one, but the bridge, rules, sysctl and dnsmasq land
/// in a namespace the test made and removes, never on the host.
/// </summary>
internal sealed class HostCommands(string? networkNamespace = null)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    public string? NetworkNamespace { get; } = networkNamespace;

    public readonly record struct Result(int ExitCode, string StandardOutput, string StandardError, string CommandLine)
    {
        public bool Succeeded => ExitCode == 0;
    }

    /// <summary>Runs a command and returns what it did (a missing binary is exit 127, as a shell reports it).</summary>
    public Result Run(params string[] argv)
    {
        var full = NetworkNamespace is null ? argv : ["ip", "netns", "exec", NetworkNamespace, .. argv];
        var commandLine = string.Join(' ', argv);
        var start = new ProcessStartInfo(full[0])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var arg in full.Skip(1))
            start.ArgumentList.Add(arg);
        // Messages are parsed and quoted: keep them in English.
        start.Environment["LC_ALL"] = "C";
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("no process");
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return new Result(127, "", $"cannot run '{full[0]}': {e.Message}", commandLine);
        }
        using (process)
        {
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(Timeout))
            {
                try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                return new Result(-1, "", $"did not finish within {Timeout.TotalSeconds:0} s", commandLine);
            }
            process.WaitForExit();
            return new Result(process.ExitCode, stdout.Result, stderr.Result, commandLine);
        }
    }

    /// <summary>Runs a command that must succeed; a failure is <see cref="NetworkHostException"/> naming it and quoting its stderr.</summary>
    public string Check(string network, params string[] argv)
    {
        var result = Run(argv);
        if (!result.Succeeded)
            throw new NetworkHostException(network, result.CommandLine, result.StandardError.Length > 0 ? result.StandardError : $"exit status {result.ExitCode}");
        return result.StandardOutput;
    }

    /// <summary>Runs an <c>ip -j</c> query and parses its JSON (an empty output is an empty array).</summary>
    public JsonDocument? Json(params string[] argv)
    {
        var result = Run(argv);
        if (!result.Succeeded)
            return null;
        var text = result.StandardOutput.Trim();
        return JsonDocument.Parse(text.Length == 0 ? "[]" : text);
    }
}
