using System.Net.Sockets;
using System.Text;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using KvmPS.Migration;
using Xunit;
using static KvmPS.Engine.Tests.State.WorkloadConsole;

namespace KvmPS.Engine.Tests.Migration;

/// <summary>
/// The one-time token of a TCP receiver (docs/migration.md, "The token"): a connection without it or with a wrong one
/// is refused and the receiver keeps waiting; the source that brings it gets the VM across. And a paused VM moves and
/// stays paused on the destination.
/// </summary>
public partial class MigrationProcessTests
{
    private const string GoodToken = "0123456789abcdef0123456789abcdef";

    private static string TokenFile(TempDir dir, string token, UnixFileMode mode = UnixFileMode.UserRead | UnixFileMode.UserWrite)
    {
        string path = dir.File("incoming.token");
        File.WriteAllText(path, token);
        File.SetUnixFileMode(path, mode);
        return path;
    }

    [Fact]
    public void AReceiverWithATokenRefusesWrongSendersAndKeepsWaitingForTheRightOne()
    {
        using var dir = new TempDir();
        string uri = $"tcp:127.0.0.1:{FreeTcpPort()}";
        using var source = new Source(dir, 1, workMiB: 4);
        string tokenFile = TokenFile(dir, GoodToken);
        using var destination = Destination(dir, uri, 1, "--incoming-token-file", tokenFile);
        WaitListening(destination);
        Assert.False(File.Exists(tokenFile), "the VMM deletes the token file once read");

        // 1. A stranger that speaks no token at all (a bare stream header).
        using (var stranger = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            stranger.Connect(System.Net.IPAddress.Loopback, int.Parse(uri.Split(':')[2]));
            stranger.Send("KVMPSMIG\u0001\0\0\0\0\0\0\0"u8.ToArray());
            Assert.True(WaitUntil(() => destination.Stderr.Contains("did not start with a migration token"), Timeout), destination.Stderr);
        }
        // 2. A VMM with the wrong token: its migration fails, the VM runs on at the source.
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\", \"token\": \"{GoodToken[..^1]}0\"");
        var failed = source.WaitForMigration(s => s.GetProperty("phase").GetString() is MigrationPhases.Failed or MigrationPhases.Completed);
        Assert.Equal(MigrationPhases.Failed, failed.GetProperty("phase").GetString());
        Assert.True(WaitUntil(() => destination.Stderr.Contains("wrong migration token"), Timeout), destination.Stderr);
        Assert.False(destination.HasExited, "a refused sender does not end the receiver: " + destination.Stderr);
        Assert.DoesNotContain(GoodToken, destination.Stderr); // the secret is never logged
        source.AssertStillRunning();

        // 3. The right token: the VM moves and counts on there.
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\", \"token\": \"{GoodToken}\"");
        Assert.Equal(VmmExitCode.Migrated, source.Process.WaitForExit(Timeout));
        Assert.True(WaitUntil(() => destination.Stderr.Contains("received the VM from"), Timeout), destination.Stderr);
        string dst = dir.File("dst.log");
        Assert.True(WaitForFile(dst, t => CountLine().Matches(t).Count >= 2 || t.Contains("FAILED"), Timeout), ReadText(dst) + destination.Stderr);
        Assert.DoesNotContain("FAILED", ReadText(dst));
        AssertCountsContinue(ReadText(source.Serial), ReadText(dst));
        using var client = new ControlClient(dir.File("dst.sock"));
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());
        client.Ok("stop", "\"graceful\": false");
    }

    [Fact]
    public void ATokenFileOthersCanReadIsRefusedBeforeListening()
    {
        using var dir = new TempDir();
        string tokenFile = TokenFile(dir, GoodToken, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        using var destination = Destination(dir, $"tcp:127.0.0.1:{FreeTcpPort()}", 1, "--incoming-token-file", tokenFile);
        Assert.Equal(VmmExitCode.UsageError, destination.WaitForExit(Timeout));
        Assert.Contains("it must be 0600", destination.Stderr);
        Assert.DoesNotContain("waiting for a migration stream", destination.Stderr);
    }

    [Fact]
    public void APausedVmMovesAndStaysPausedThere()
    {
        using var dir = new TempDir();
        string uri = $"tcp:127.0.0.1:{FreeTcpPort()}";
        using var source = new Source(dir, 1, workMiB: 4);
        using var destination = Destination(dir, uri, 1, "--incoming-token-file", TokenFile(dir, GoodToken));
        WaitListening(destination);
        source.Control.Ok("pause");
        int countsWhenPaused = source.Counts;
        source.Control.Ok("migrate", $"\"uri\": \"{uri}\", \"token\": \"{GoodToken}\"");
        Assert.Equal(VmmExitCode.Migrated, source.Process.WaitForExit(Timeout));
        Assert.True(WaitUntil(() => destination.Stderr.Contains("paused, as it was on the source"), Timeout), destination.Stderr);

        using var client = new ControlClient(dir.File("dst.sock"));
        Assert.Equal("Paused", client.Ok("status").GetProperty("state").GetString());
        Thread.Sleep(1000);
        string dst = dir.File("dst.log");
        Assert.Equal(0, CountLine().Matches(ReadText(dst)).Count); // no guest instruction ran while paused
        client.Ok("resume");
        Assert.True(WaitForFile(dst, t => CountLine().Matches(t).Count >= 2 || t.Contains("FAILED"), Timeout), ReadText(dst) + destination.Stderr);
        Assert.DoesNotContain("FAILED", ReadText(dst));
        Assert.True(AssertCountsContinue(ReadText(source.Serial), ReadText(dst)) > countsWhenPaused);
        client.Ok("stop", "\"graceful\": false");
    }

    [Fact]
    public void TokensCompareWholeAndByLength()
    {
        byte[] token = Encoding.UTF8.GetBytes(GoodToken);
        Assert.True(MigrationToken.Matches(token, token));
        Assert.False(MigrationToken.Matches(token[..^1], token));
        Assert.False(MigrationToken.Matches([.. token, 0], token)); // zero padding must not make a longer token equal
        Assert.False(MigrationToken.Matches(Encoding.UTF8.GetBytes(GoodToken.ToUpperInvariant()), token));
        Assert.False(MigrationToken.Matches([], token));
    }

    private static bool WaitUntil(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) return false;
            Thread.Sleep(20);
        }
        return true;
    }
}
