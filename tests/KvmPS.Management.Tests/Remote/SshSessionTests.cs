using KvmPS.Management.Remote;

namespace KvmPS.Management.Tests.Remote;

/// <summary>The pieces of a move between hosts that need no second host: the forward's arguments and the session's lines.</summary>
public sealed class SshSessionTests
{
    private static readonly SshTarget H2 = SshTarget.Parse("admin@h2");

    [Fact]
    public void The_forward_binds_loopback_only_fails_when_it_cannot_forward_and_runs_no_command()
    {
        var transport = new SshTransport(new SshTransportOptions { KeyFilePath = "/k/id", ConfigFilePath = "/k/cfg", ConnectTimeoutSeconds = 7 });
        var arguments = transport.BuildForwardArguments(H2, 40001, "/var/lib/kvmps/vms/web/incoming.sock");
        Assert.Equal(
            ["-N", "-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=7", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=5",
             "-o", "ServerAliveCountMax=3", "-L", "127.0.0.1:40001:/var/lib/kvmps/vms/web/incoming.sock",
             "-F", "/k/cfg", "-i", "/k/id", "-o", "IdentitiesOnly=yes", "-l", "admin", "--", "h2"],
            arguments);
    }

    [Fact]
    public void A_socket_path_that_ssh_would_misread_is_refused_before_ssh_runs()
    {
        using var ssh = FakeSsh.RunLocally();
        var transport = new SshTransport(new SshTransportOptions { SshProgram = ssh.Program });
        foreach (var path in new[] { "relative.sock", "/a:b.sock", "/a b.sock" })
            Assert.Throws<RemoteProtocolException>(() => SshForward.Start(transport, H2, path, TimeSpan.FromSeconds(1)));
        Assert.False(ssh.WasRun);
    }

    [Fact]
    public void A_session_writes_lines_to_the_remote_command_and_reads_its_lines_as_they_come()
    {
        using var ssh = FakeSsh.RunLocally();
        var kvmps = ssh.Script("kvmps", "read first; echo \"got $first\"; read second; echo \"then $second\"; exit 3");
        var transport = new SshTransport(new SshTransportOptions { SshProgram = ssh.Program, RemoteKvmps = kvmps });
        using var session = SshSession.Start(transport, H2, ["vm", "receive"]);

        Assert.True(session.WriteLine("one"));
        Assert.Equal("got one", session.ReadLine(TimeSpan.FromSeconds(10)));
        Assert.True(session.WriteLine("two"));
        Assert.Equal("then two", session.ReadLine(TimeSpan.FromSeconds(10)));
        Assert.Null(session.ReadLine(TimeSpan.FromSeconds(10)));
        var failure = Assert.IsType<RemoteCommandFailedException>(session.Failure());
        Assert.Equal(3, failure.ExitCode);
    }

    [Fact]
    public void A_session_whose_ssh_fails_is_the_transports_typed_error()
    {
        using var ssh = FakeSsh.Failing(255, "admin@h2: Permission denied (publickey).");
        var transport = new SshTransport(new SshTransportOptions { SshProgram = ssh.Program });
        using var session = SshSession.Start(transport, H2, ["vm", "receive"]);
        Assert.Null(session.ReadLine(TimeSpan.FromSeconds(10)));
        Assert.Throws<RemoteAuthenticationException>(() => session.Failure());
    }
}
