using KvmPS.Management.Remote;

namespace KvmPS.Management.Tests.Remote;

public sealed class SshTargetTests
{
    [Theory]
    [InlineData("h2", null, "h2")]
    [InlineData("root@h2", "root", "h2")]
    [InlineData("admin@node-1.example.com", "admin", "node-1.example.com")]
    [InlineData("10.231.0.2", null, "10.231.0.2")]
    [InlineData("fe80::1%eth0", null, "fe80::1%eth0")]
    [InlineData("svc_kvm.1@h_2", "svc_kvm.1", "h_2")]
    public void Parse_accepts_plain_host_and_user_names(string text, string? user, string host)
    {
        var target = SshTarget.Parse(text);
        Assert.Equal((user, host), (target.UserName, target.HostName));
        Assert.Equal(text, target.ToString());
    }

    [Theory]
    [InlineData("-oProxyCommand=touch /tmp/kvmps-pwned", "starts with '-'")]
    [InlineData("-oProxyCommand=x", "starts with '-'")]
    [InlineData("-v", "starts with '-'")]
    [InlineData("h2 -oProxyCommand=x", "U+0020")]
    [InlineData("h2\tx", "U+0009")]
    [InlineData("h2\nx", "U+000A")]
    [InlineData("h2\u0000", "U+0000")]
    [InlineData("h2;reboot", "';'")]
    [InlineData("h2$(id)", "'$'")]
    [InlineData("h2`id`", "'`'")]
    [InlineData("'h2'", "'''")]
    [InlineData("h2/x", "'/'")]
    [InlineData("", "is empty")]
    [InlineData("root@", "is empty")]
    [InlineData("@h2", "is empty")]
    [InlineData("-oProxyCommand=x@h2", "starts with '-'")]
    [InlineData("-l@h2", "starts with '-'")]
    [InlineData("ro ot@h2", "U+0020")]
    [InlineData("root@h2@h3", "'@'")]
    [InlineData("root$x@h2", "'$'")]
    public void Parse_refuses_names_that_could_reach_ssh_as_options_or_a_shell_as_code(string text, string reason)
    {
        var e = Assert.Throws<InvalidRemoteNameException>(() => SshTarget.Parse(text));
        Assert.Contains(reason, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Overlong_names_are_refused()
    {
        Assert.Throws<InvalidRemoteNameException>(() => new SshTarget(new string('a', SshTarget.HostNameMaximumLength + 1)));
        Assert.Throws<InvalidRemoteNameException>(() => new SshTarget("h2", new string('u', SshTarget.UserNameMaximumLength + 1)));
        Assert.Equal(SshTarget.HostNameMaximumLength, new SshTarget(new string('a', SshTarget.HostNameMaximumLength)).HostName.Length);
    }
}
