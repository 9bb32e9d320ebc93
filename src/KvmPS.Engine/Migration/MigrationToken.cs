using System.Buffers.Binary;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace KvmPS.Migration;

/// <summary>
/// The one-time token that authenticates a migration stream on a TCP port anyone on the network could reach first
/// (docs/migration.md, "The token"): the receiver (<c>kvmps-vmm --incoming … --incoming-token-file FILE</c>) accepts a
/// connection only when its first bytes are the pre-frame <c>KVMPSTOK</c>, u32 length, the token (UTF-8), before
/// the stream's header. A wrong or missing token closes that connection and the receiver goes on waiting.
/// </summary>
public static class MigrationToken
{
    public static ReadOnlySpan<byte> Magic => "KVMPSTOK"u8;
    public const int MaxTokenBytes = 256;
    /// <summary>How long a connection may take to present its token before it is dropped (a silent peer must not block the source long).</summary>
    public const int ReadTimeoutMs = 5_000;

    /// <summary>Sender: the pre-frame, written on the connected socket before the stream's header.</summary>
    public static void Send(Socket socket, string token)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(token);
        if (bytes.Length is 0 or > MaxTokenBytes) throw new MigrationException($"the migration token must be 1-{MaxTokenBytes} bytes");
        var frame = new byte[12 + bytes.Length];
        Magic.CopyTo(frame);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(8), (uint)bytes.Length);
        bytes.CopyTo(frame, 12);
        try
        {
            int sent = 0;
            while (sent < frame.Length) sent += socket.Send(frame, sent, frame.Length - sent, SocketFlags.None);
        }
        catch (SocketException e) { throw new MigrationException($"sending the migration token failed: {e.Message}", e); }
    }

    /// <summary>
    /// Receiver: reads the pre-frame within <paramref name="timeoutMs"/>; null when it carries <paramref name="expected"/>,
    /// else why the connection is refused. The comparison takes the same time whatever the bytes and lengths.
    /// </summary>
    public static string? Verify(Socket socket, string expected, int timeoutMs = ReadTimeoutMs)
    {
        int previous = socket.ReceiveTimeout;
        socket.ReceiveTimeout = timeoutMs;
        try
        {
            Span<byte> head = stackalloc byte[12];
            if (!ReadExactly(socket, head)) return "the connection ended before it sent a migration token";
            if (!head[..8].SequenceEqual(Magic)) return "it did not start with a migration token (a sender without the destination's token)";
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(head[8..]);
            if (length is 0 or > MaxTokenBytes) return $"its token claims {length} bytes";
            var token = new byte[length];
            if (!ReadExactly(socket, token)) return "the connection ended inside its migration token";
            return Matches(token, Encoding.UTF8.GetBytes(expected)) ? null : "wrong migration token";
        }
        catch (SocketException e) when (e.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
        {
            return $"no migration token within {timeoutMs} ms";
        }
        catch (SocketException e)
        {
            return $"reading its migration token failed: {e.SocketErrorCode}";
        }
        finally
        {
            try { socket.ReceiveTimeout = previous; } catch (ObjectDisposedException) { }
        }
    }

    /// <summary>Reads a token file (<c>--incoming-token-file</c>): it must be readable by its owner only, as it holds a secret.</summary>
    public static string ReadFile(string path)
    {
        UnixFileMode mode;
        try { mode = File.GetUnixFileMode(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new ArgumentException($"the token file {path} cannot be read: {e.Message}"); }
        if ((mode & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
            throw new ArgumentException($"the token file {path} is readable or writable by others (mode {Convert.ToString((int)mode, 8)}); it must be 0600");
        string token;
        try { token = File.ReadAllText(path).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new ArgumentException($"the token file {path} cannot be read: {e.Message}"); }
        if (Encoding.UTF8.GetByteCount(token) is 0 or > MaxTokenBytes) throw new ArgumentException($"the token in {path} must be 1-{MaxTokenBytes} bytes");
        return token;
    }

    /// <summary>
    /// Constant-time: both are padded to <see cref="MaxTokenBytes"/> and compared whole, so neither where they differ nor
    /// the length leaks through timing (managed code only: no OpenSSL load inside the VMM's sandbox).
    /// </summary>
    internal static bool Matches(ReadOnlySpan<byte> presented, ReadOnlySpan<byte> expected)
    {
        Span<byte> a = stackalloc byte[MaxTokenBytes], b = stackalloc byte[MaxTokenBytes];
        a.Clear();
        b.Clear();
        presented[..Math.Min(presented.Length, MaxTokenBytes)].CopyTo(a);
        expected[..Math.Min(expected.Length, MaxTokenBytes)].CopyTo(b);
        bool same = CryptographicOperations.FixedTimeEquals(a, b);
        return same & presented.Length == expected.Length;
    }

    private static bool ReadExactly(Socket socket, Span<byte> buffer)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = socket.Receive(buffer[read..]);
            if (n == 0) return false;
            read += n;
        }
        return true;
    }
}
