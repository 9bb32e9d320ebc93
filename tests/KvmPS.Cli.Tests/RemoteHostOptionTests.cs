using KvmPS.Cli;

namespace KvmPS.Cli.Tests;

/// <summary>
/// The global --host option in-process, against a fake ssh client (KVMPS_SSH) that runs the remote command line
/// locally with sh: parsing, refusals before ssh runs, and the exit statuses. The two-host tests (TwoHosts/) run
/// the same through real sshds.
/// </summary>
public sealed class RemoteHostOptionTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmps-host-").FullName;
    private readonly Dictionary<string, string> _environment = new();

    public RemoteHostOptionTests()
    {
        SshArgumentsFile = Path.Combine(_directory, "ssh-args");
        _environment["KVMPS_SSH"] = Script("ssh", $"printf '%s\\n' \"$@\" > {SshArgumentsFile}\nfor last; do :; done\nexec sh -c \"$last\"");
        _environment["KVMPS_REMOTE_KVMPS"] = Script("kvmps", "echo \"remote kvmps: $*\"; echo 'kvmps: a remote warning' >&2; exit ${FAKE_EXIT:-0}");
    }

    private string SshArgumentsFile { get; }

    private string Script(string name, string body)
    {
        var path = Path.Combine(_directory, name);
        File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return path;
    }

    private (int Code, string Out, string Err) Run(params string[] args) => RunWithInput("", args);

    private (int Code, string Out, string Err) RunWithInput(string stdin, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        // No manager: a command that runs remotely must never open the local store.
        var app = new CliApp(new StringReader(stdin), output, error, () => throw new InvalidOperationException("the local store was opened"))
        {
            GetEnvironment = name => _environment.GetValueOrDefault(name),
        };
        return (app.Run(args), output.ToString(), error.ToString());
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData("--host", "h2")]
    [InlineData("--host=h2")]
    public void The_command_after_host_runs_remotely_with_its_output_and_exit_status(params string[] hostOption)
    {
        var (code, output, error) = Run([.. hostOption, "vm", "list", "--json"]);
        Assert.True(code == 0, error);
        Assert.Equal("remote kvmps: vm list --json\n", output);
        Assert.Equal("kvmps: a remote warning\n", error);
        var ssh = File.ReadAllLines(SshArgumentsFile);
        Assert.Equal(["--", "h2"], ssh[^3..^1]);
        Assert.Contains("BatchMode=yes", ssh);
    }

    [Fact]
    public void The_remote_exit_status_is_returned()
    {
        _environment["KVMPS_REMOTE_KVMPS"] = Script("kvmps5", "echo 'kvmps: VM x not found' >&2; exit 5");
        var (code, _, error) = Run("--host", "root@h2", "vm", "start", "x");
        Assert.Equal(ExitCodes.VmNotFound, code);
        Assert.Equal("kvmps: VM x not found\n", error);
        Assert.Contains("root", File.ReadAllLines(SshArgumentsFile));
    }

    [Fact]
    public void Kvmps_host_from_the_environment_and_identity_before_the_command()
    {
        var key = Script("id_test", "");
        _environment["KVMPS_HOST"] = "admin@h3";
        var (code, output, error) = Run("--identity", key, "vm", "list");
        Assert.True(code == 0, error);
        Assert.Equal("remote kvmps: vm list\n", output);
        var ssh = File.ReadAllLines(SshArgumentsFile);
        Assert.Equal(["-i", key], ssh.SkipWhile(a => a != "-i").Take(2));
        Assert.Equal(["-l", "admin", "--", "h3"], ssh[^5..^1]);

        // --host on the command line wins over KVMPS_HOST.
        (code, _, error) = Run("--host", "h4", "vm", "list");
        Assert.True(code == 0, error);
        Assert.Equal("h4", File.ReadAllLines(SshArgumentsFile)[^2]);
    }

    [Theory]
    [InlineData("-oProxyCommand=touch /tmp/kvmps-pwned", "starts with '-'")]
    [InlineData("h2 -oProxyCommand=x", "U+0020")]
    [InlineData("-l@h2", "starts with '-'")]
    [InlineData("h2;id", "';'")]
    public void A_host_that_could_inject_ssh_options_is_a_usage_error_and_ssh_never_runs(string host, string reason)
    {
        var (code, output, error) = Run("--host", host, "vm", "list");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("", output);
        Assert.Contains("--host: The ", error);
        Assert.Contains(reason, error);
        Assert.False(File.Exists(SshArgumentsFile), "ssh was run");
    }

    [Fact]
    public void Identity_without_a_host_and_a_missing_key_are_usage_errors()
    {
        Assert.Equal(ExitCodes.Usage, Run("--identity", "/k", "vm", "list").Code);
        var (code, _, error) = Run("--host", "h2", "--identity", "/nonexistent/key", "vm", "console", "web");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("/nonexistent/key", error);
        (code, _, error) = Run("--host", "h2", "--identity", "/nonexistent/key", "vm", "list");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("/nonexistent/key", error);
        Assert.Equal(ExitCodes.Usage, Run("--host").Code);
        Assert.False(File.Exists(SshArgumentsFile), "ssh was run");
    }

    [Fact]
    public void Vm_console_runs_through_ssh_with_a_terminal_and_without_ssh_escapes()
    {
        // The terminal is this process's (not captured): the exit status is the remote command's.
        var (code, _, error) = Run("--host", "h2", "vm", "console", "--no-replay", "web");
        Assert.True(code == 0, error);
        var ssh = File.ReadAllLines(SshArgumentsFile);
        Assert.Equal("-t", ssh[0]);
        Assert.DoesNotContain("-T", ssh);
        Assert.Contains("-e", ssh);
        Assert.Equal("none", ssh[Array.IndexOf(ssh, "-e") + 1]);
        Assert.Equal(["--", "h2"], ssh[^3..^1]);
        Assert.EndsWith("'vm' 'console' '--no-replay' 'web'", ssh[^1]);
        // Options in the host are refused before ssh runs, as for every command.
        File.Delete(SshArgumentsFile);
        (code, _, _) = Run("--host", "-oProxyCommand=x", "vm", "console", "web");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.False(File.Exists(SshArgumentsFile), "ssh was run");
    }

    [Fact]
    public void Ssh_failing_is_exit_status_7_naming_the_host()
    {
        _environment["KVMPS_SSH"] = Script("ssh-refused", "echo 'root@h2: Permission denied (publickey).' >&2; exit 255");
        var (code, output, error) = Run("--host", "root@h2", "vm", "list");
        Assert.Equal(ExitCodes.RemoteHost, code);
        Assert.Equal("", output);
        Assert.StartsWith("kvmps: Host 'root@h2' refused the SSH key", error);
    }

    [Fact]
    public void Without_a_host_the_command_runs_locally()
    {
        var (code, output, _) = Run("--version");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.StartsWith("kvmps ", output);
        Assert.False(File.Exists(SshArgumentsFile), "ssh was run");
    }

    [Fact]
    public void Dsc_input_goes_to_the_remote_kvmps_and_other_commands_get_none()
    {
        _environment["KVMPS_REMOTE_KVMPS"] = Script("kvmps-cat", "echo \"args: $*\"; cat");
        var (code, output, error) = RunWithInput("{\"name\":\"web\"}", "--host", "h2", "dsc", "get");
        Assert.True(code == 0, error);
        Assert.Equal("args: dsc get\n{\"name\":\"web\"}", output);

        (code, output, error) = RunWithInput("not for vm list", "--host", "h2", "vm", "list");
        Assert.True(code == 0, error);
        Assert.Equal("args: vm list\n", output);
    }
}

/// <summary>Manifests that name a HostName: read here only through kvmps apply's routing or stdin.</summary>
public sealed class RemoteManifestTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmps-mh-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static (int Code, string Out, string Err) Run(string stdin, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var app = new CliApp(new StringReader(stdin), output, error, () => throw new InvalidOperationException("the local store was opened"))
        {
            GetEnvironment = _ => null,
        };
        return (app.Run(args), output.ToString(), error.ToString());
    }

    [Fact]
    public void A_host_name_that_could_inject_ssh_options_is_a_manifest_error_at_its_position()
    {
        var file = Path.Combine(_directory, "bad.psd1");
        File.WriteAllText(file, "@{\n    HostName = '-oProxyCommand=touch /tmp/x'\n    VirtualMachines = @()\n}\n");
        var (code, _, error) = Run("", "apply", file);
        Assert.Equal(ExitCodes.ManifestError, code);
        Assert.Contains($"{file}:2:", error);
        Assert.Contains("starts with '-'", error);
    }

    [Fact]
    public void HostName_read_from_stdin_is_accepted_but_not_from_a_file_read_by_the_management_reader()
    {
        var e = Assert.Throws<KvmPS.Management.DesiredState.DesiredStateException>(() =>
            KvmPS.Management.DesiredState.DesiredStateReader.Parse("@{ HostName = 'h2'; VirtualMachines = @() }", "m.psd1"));
        Assert.Contains("HostName", e.Message);
        Assert.Contains("kvmps apply", e.Message);
        var state = KvmPS.Management.DesiredState.DesiredStateReader.Parse("@{ HostName = 'h2'; VirtualMachines = @() }", "m.psd1", hostNameAllowed: true);
        Assert.Empty(state.Vms);
        Assert.Throws<KvmPS.Management.DesiredState.DesiredStateException>(() =>
            KvmPS.Management.DesiredState.DesiredStateReader.Parse("@{ HostName = 2; VirtualMachines = @() }", "m.psd1", hostNameAllowed: true));
    }
}
