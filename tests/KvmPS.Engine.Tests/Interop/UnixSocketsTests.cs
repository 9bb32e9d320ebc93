using System.Net.Sockets;
using KvmPS.Interop;

namespace KvmPS.Engine.Tests.Interop;

public class UnixSocketsTests
{
    /// <summary>The file is 0600 from birth, under the test host's usual umask (022, which alone would give 0755).</summary>
    [Fact]
    public void BindOwnerOnlyMakesTheSocketFileOwnerOnly()
    {
        string dir = Directory.CreateTempSubdirectory("kvmps-sock").FullName;
        try
        {
            string path = Path.Combine(dir, "s.sock");
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            UnixSockets.BindOwnerOnly(socket, path);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }
        finally { Directory.Delete(dir, true); }
    }
}
