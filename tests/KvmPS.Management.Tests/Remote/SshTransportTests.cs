using KvmPS.Management.Remote;

namespace KvmPS.Management.Tests.Remote;

/// <summary>The transport against a fake ssh client: the argument vector, the quoting and the error mapping.</summary>
public sealed class SshTransportTests
{
    private static readonly SshTarget H2 = SshTarget.Parse("admin@h2");

    [Fact]
    public void Ssh_gets_options_first_then_double_dash_the_host_and_one_quoted_command()
    {
        var transport = new SshTransport(new SshTransportOptions { KeyFilePath = "/k/id", ConfigFilePath = "/k/cfg", ConnectTimeoutSeconds = 7 });
        var arguments = transport.BuildSshArguments(H2, ["vm", "list", "--json"]);
        Assert.Equal(
            ["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=7", "-F", "/k/cfg", "-i", "/k/id", "-o", "IdentitiesOnly=yes", "-l", "admin",
             "--", "h2", "KVMPS_HOST= 'kvmps' 'vm' 'list' '--json'"],
            arguments);
    }

    [Fact]
    public void Every_argument_reaches_the_remote_kvmps_as_one_word_whatever_it_holds()
    {
        using var ssh = FakeSsh.RunLocally();
        var kvmps = ssh.Script("kvmps", "printf '<%s>\\n' \"$@\"; echo \"KVMPS_HOST=[$KVMPS_HOST]\"");
        var marker = Path.Combine(ssh.Directory, "pwned");
        var transport = new SshTransport(new SshTransportOptions { SshProgram = ssh.Program, RemoteKvmps = kvmps });
        string[] arguments = ["a b", "it's", $"$(touch {marker})", $"; touch {marker}", "line1\nline2", "`id`", "--", "-x", ""];

        var result = transport.Run(H2, arguments);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(string.Concat(arguments.Select(a => $"<{a}>\n")) + "KVMPS_HOST=[]\n", result.StandardOutput);
        Assert.False(File.Exists(marker), "an argument was run as shell code");
    }

    [Fact]
    public void The_remote_kvmps_exit_status_and_output_are_returned_as_they_are()
    {
        using var ssh = FakeSsh.RunLocally();
        var kvmps = ssh.Script("kvmps", "echo out; echo 'kvmps: VM x not found' >&2; exit 5");
        var result = new SshTransport(new SshTransportOptions { SshProgram = ssh.Program, RemoteKvmps = kvmps }).Run(H2, ["vm", "start", "x"]);
        Assert.Equal((5, "out\n", "kvmps: VM x not found\n"), (result.ExitCode, result.StandardOutput, result.StandardError));
    }

    [Theory]
    [InlineData(255, "admin@h2: Permission denied (publickey).", typeof(RemoteAuthenticationException), "refused the SSH key")]
    [InlineData(255, "Host key verification failed.", typeof(RemoteAuthenticationException), "could not be verified")]
    [InlineData(255, "ssh: connect to host h2 port 22: Connection refused", typeof(RemoteHostUnreachableException), "is unreachable over SSH")]
    [InlineData(255, "ssh: Could not resolve hostname h2: Name or service not known", typeof(RemoteHostUnreachableException), "is unreachable over SSH")]
    [InlineData(255, "ssh: connect to host h2 port 22: Connection timed out", typeof(RemoteHostUnreachableException), "is unreachable over SSH")]
    [InlineData(255, "something new went wrong", typeof(RemoteHostException), "ssh to host 'admin@h2' failed (exit status 255): something new went wrong")]
    [InlineData(127, "bash: line 1: kvmps: command not found", typeof(RemoteKvmpsNotFoundException), "has no usable 'kvmps'")]
    [InlineData(126, "bash: line 1: /opt/kvmps: Permission denied", typeof(RemoteKvmpsNotFoundException), "has no usable 'kvmps'")]
    public void Ssh_failures_become_typed_errors_that_name_the_host(int exitCode, string stderr, Type expected, string message)
    {
        using var ssh = FakeSsh.Failing(exitCode, stderr);
        var e = Assert.Throws(expected, () => new SshTransport(new SshTransportOptions { SshProgram = ssh.Program }).Run(H2, ["vm", "list"]));
        var remote = Assert.IsAssignableFrom<RemoteHostException>(e);
        Assert.Equal("admin@h2", remote.HostName);
        Assert.Contains("'admin@h2'", e.Message);
        Assert.Contains(message, e.Message);
        Assert.Contains(stderr.TrimEnd('.'), remote.SshError);
    }

    [Fact]
    public void A_missing_ssh_client_or_key_file_is_reported_before_anything_runs()
    {
        var missing = Assert.Throws<SshClientNotFoundException>(() =>
            new SshTransport(new SshTransportOptions { SshProgram = "/nonexistent/ssh" }).Run(H2, ["vm", "list"]));
        Assert.Contains("'/nonexistent/ssh'", missing.Message);
        Assert.Contains("admin@h2", missing.Message);

        using var ssh = FakeSsh.RunLocally();
        var key = Assert.Throws<FileNotFoundException>(() =>
            new SshTransport(new SshTransportOptions { SshProgram = ssh.Program, KeyFilePath = "/nonexistent/id_ed25519" }).Run(H2, ["vm", "list"]));
        Assert.Contains("/nonexistent/id_ed25519", key.Message);
        Assert.False(ssh.WasRun);
    }

    [Fact]
    public void A_command_that_outlives_the_timeout_is_ended_and_reported()
    {
        using var ssh = FakeSsh.RunLocally();
        var kvmps = ssh.Script("kvmps", "sleep 30");
        var transport = new SshTransport(new SshTransportOptions { SshProgram = ssh.Program, RemoteKvmps = kvmps, CommandTimeout = TimeSpan.FromMilliseconds(300) });
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<RemoteTimeoutException>(() => transport.Run(H2, ["vm", "list"]));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"took {clock.Elapsed}");
        Assert.Equal("admin@h2", e.HostName);
    }

    [Fact]
    public void Environment_variables_configure_the_client_the_config_file_and_the_remote_kvmps()
    {
        var environment = new Dictionary<string, string> { ["KVMPS_SSH"] = "/opt/ssh", ["KVMPS_SSH_CONFIG"] = "/etc/k.conf", ["KVMPS_REMOTE_KVMPS"] = "/opt/kvmps/kvmps" };
        var options = SshTransportOptions.FromEnvironment(n => environment.GetValueOrDefault(n));
        Assert.Equal(("/opt/ssh", "/etc/k.conf", "/opt/kvmps/kvmps"), (options.SshProgram, options.ConfigFilePath, options.RemoteKvmps));
        Assert.Equal(("ssh", null, "kvmps"), (SshTransportOptions.FromEnvironment(_ => null) is var d ? (d.SshProgram, d.ConfigFilePath, d.RemoteKvmps) : default));
    }
}
