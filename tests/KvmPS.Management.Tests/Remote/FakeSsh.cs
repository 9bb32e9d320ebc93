using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.Remote;

/// <summary>
/// A stand-in for the ssh client: a shell script that records its arguments (one per line) in
/// <see cref="ArgumentsFile"/> and then does what the test scripted: run the remote command line locally
/// (<see cref="RunLocally"/>, so the quoting is exercised by a real shell), or fail as ssh does.
/// </summary>
internal sealed class FakeSsh : IDisposable
{
    private readonly TempDirectory _directory = new();

    private FakeSsh(string body)
    {
        ArgumentsFile = Path.Combine(_directory.Path, "ssh-args");
        Program = Path.Combine(_directory.Path, "ssh");
        File.WriteAllText(Program, $"#!/bin/sh\nprintf '%s\\n' \"$@\" > {ArgumentsFile}\n{body}\n");
        File.SetUnixFileMode(Program, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public string Program { get; }
    public string ArgumentsFile { get; }
    public string Directory => _directory.Path;
    public bool WasRun => File.Exists(ArgumentsFile);

    /// <summary>Runs the last argument (the remote command line) with sh, as the remote login shell would.</summary>
    public static FakeSsh RunLocally() => new("for last; do :; done\nexec sh -c \"$last\"");

    /// <summary>Prints <paramref name="stderr"/> and exits with <paramref name="exitCode"/>.</summary>
    public static FakeSsh Failing(int exitCode, string stderr) =>
        new($"printf '%s\\n' '{stderr.Replace("'", "'\\''")}' >&2\nexit {exitCode}");

    /// <summary>Writes a script into the fake's directory (e.g. a fake remote kvmps).</summary>
    public string Script(string name, string body)
    {
        var path = Path.Combine(_directory.Path, name);
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    public void Dispose() => _directory.Dispose();
}
