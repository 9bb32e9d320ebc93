using System.IO.Pipes;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;

namespace KvmPS.Engine.Tests.Sandbox;

/// <summary>
/// A jailed kvmps-vmm migrates to a <c>unix:</c> destination outside its jail over a connection the sender made and
/// passed with <c>migrate</c> (SCM_RIGHTS, docs/vmm.md "Passing open files"): by path it cannot connect (the socket's
/// folder is root's, 0700, and not in the jail). What is not a connected Unix stream socket is refused naming it.
/// </summary>
[Collection("vmm-process")]
public class JailMigrationConnectionTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "chown", SetLastError = true)]
    private static extern int Chown(string path, uint uid, uint gid);

    private static string[] Jail => ["--jail", "on", "--user", JailPassedFilesTests.JailUser];

    private static string Refusal(JsonElement reply)
    {
        Assert.False(reply.GetProperty("ok").GetBoolean(), reply.ToString());
        Assert.Equal(ControlErrorCodes.InvalidArgument, reply.GetProperty("error").GetProperty("code").GetString());
        return reply.GetProperty("error").GetProperty("message").GetString()!;
    }

    private static JsonElement WaitForMigrationEnd(ControlClient client)
    {
        var deadline = DateTime.UtcNow + Timeout;
        JsonElement status;
        while ((status = client.Ok("migrate.status")).GetProperty("phase").GetString() is not (MigrationPhases.Failed or MigrationPhases.Completed or MigrationPhases.Cancelled)
               && DateTime.UtcNow < deadline)
            Thread.Sleep(20);
        return status;
    }

    [Fact]
    public void AJailedVmmMigratesToASocketOutsideItsJailOverTheConnectionPassedWithTheRequest()
    {
        Assert.Equal(0u, KvmPS.Interop.Libc.GetEuid()); // the jail is set up by root
        using var dir = JailPassedFilesTests.VmFolder();
        // The destination's socket: in a folder only root may enter, outside the source's jail.
        using var outside = new TempDir();
        Assert.Equal(0, Chown(outside.Path, 0, 0));
        File.SetUnixFileMode(outside.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string incoming = outside.File("in.sock"), uri = "unix:" + incoming;
        using var receiverDir = JailPassedFilesTests.VmFolder();
        string receiverSock = receiverDir.File("d.sock");
        using var receiver = new VmmProcess([.. Jail, "--incoming", uri, "--control-socket", receiverSock, "--serial", "file:" + receiverDir.File("d.log")]);
        var deadline = DateTime.UtcNow + Timeout;
        while (!receiver.Stderr.Contains("waiting for a migration stream") && DateTime.UtcNow < deadline && !receiver.HasExited) Thread.Sleep(10);
        Assert.Contains("waiting for a migration stream", receiver.Stderr);

        string sock = dir.File("c.sock");
        using var source = new VmmProcess([.. Jail, "--control-socket", sock, "--serial", "file:" + dir.File("s.log")]);
        using var client = new ControlClient(sock);
        client.WaitForState("Running", Timeout);
        Assert.Contains(MigrateRequest.Name, client.Ok("describe").GetProperty("passed_files_requests").EnumerateArray().Select(e => e.GetString()));

        // By path, the jailed VMM cannot reach the socket: the migration fails and the VM runs on here.
        client.Ok("migrate", $"\"uri\": \"{uri}\"");
        var failed = WaitForMigrationEnd(client);
        Assert.Equal(MigrationPhases.Failed, failed.GetProperty("phase").GetString());
        Assert.Contains("cannot connect", failed.GetProperty("error").GetString());
        Assert.Equal("Running", client.Ok("status").GetProperty("state").GetString());

        // What is not a connected Unix stream socket is refused naming the destination and what came; so is a file for tcp:.
        using (var pipe = new AnonymousPipeServerStream(PipeDirection.In))
            Assert.Contains($"the file passed for the destination '{uri}' is a pipe", Refusal(client.RequestWithFiles("migrate", $"\"uri\": \"{uri}\", \"passed_files\": 1", [pipe.ClientSafePipeHandle])));
        using (var other = KvmPS.Interop.UnixStreamSockets.Connect(receiverSock))
            Assert.Contains("a passed connection is for a unix: destination", Refusal(client.RequestWithFiles("migrate", "\"uri\": \"tcp:127.0.0.1:1\", \"passed_files\": 1", [other])));

        // Connected here (root) and passed: the VM moves; the source says it used the passed connection.
        using (var connection = KvmPS.Interop.UnixStreamSockets.Connect(incoming))
        {
            var started = client.RequestWithFiles("migrate", $"\"uri\": \"{uri}\", \"passed_files\": 1", [connection]);
            Assert.True(started.GetProperty("ok").GetBoolean(), started.ToString());
        }
        Assert.Equal(VmmExitCode.Migrated, source.WaitForExit(Timeout));
        Assert.Contains("over the connection passed with the request", source.Stderr);
        using var moved = new ControlClient(receiverSock);
        moved.WaitForState("Running", Timeout);
        moved.Ok("stop", "\"graceful\": false");
        Assert.Equal(VmmExitCode.Ok, receiver.WaitForExit(Timeout));
        Assert.DoesNotContain("sandbox violation", source.Stderr + receiver.Stderr);
    }
}
