using System.Security.Cryptography;

namespace KvmPS.Vmm.Vnc;

/// <summary>
/// VNC Authentication (RFC 6143 7.2.2): the server sends 16 random bytes, the viewer returns them DES-encrypted (ECB)
/// with the password as the key: at most 8 bytes, zero-padded, each byte's bits reversed (the historic VNC quirk the
/// RFC's errata describe).
/// </summary>
public static class VncAuthentication
{
    public const int ChallengeBytes = 16;

    /// <summary>The DES key of a password: its first 8 bytes (Latin-1), zero-padded, bits of each byte mirrored.</summary>
    public static byte[] KeyOf(string password)
    {
        var key = new byte[8];
        for (int i = 0; i < Math.Min(8, password.Length); i++) key[i] = Mirror((byte)password[i]);
        return key;
    }

    private static byte Mirror(byte b)
    {
        int r = 0;
        for (int i = 0; i < 8; i++) if ((b & (1 << i)) != 0) r |= 0x80 >> i;
        return (byte)r;
    }

    /// <summary>The response a viewer knowing <paramref name="password"/> sends for <paramref name="challenge"/>.</summary>
    public static byte[] Response(string password, ReadOnlySpan<byte> challenge)
    {
        using var des = DES.Create();
        des.Key = KeyOf(password); // DES weak keys are refused by .NET; see Check below
        return des.EncryptEcb(challenge, PaddingMode.None);
    }

    /// <summary>Whether <paramref name="response"/> answers <paramref name="challenge"/> for <paramref name="password"/>.</summary>
    public static bool Check(string password, ReadOnlySpan<byte> challenge, ReadOnlySpan<byte> response) =>
        response.Length == ChallengeBytes && CryptographicOperations.FixedTimeEquals(Response(password, challenge), response);

    /// <summary>
    /// Reads the password file: its first line, which must not be empty. Throws <see cref="VmmConfigException"/>
    /// naming the file and the setting.
    /// </summary>
    public static string ReadPasswordFile(string path, string setting)
    {
        string text;
        try { text = File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new VmmConfigException($"{setting}: cannot read the VNC password file {path}: {IoErrorText.Describe(e, path)}"); }
        string line = text.Split('\n', 2)[0].TrimEnd('\r');
        if (line.Length == 0) throw new VmmConfigException($"{setting}: the VNC password file {path} is empty (its first line is the password).");
        if (line.Any(c => c > 0xff)) throw new VmmConfigException($"{setting}: the VNC password in {path} has characters beyond Latin-1.");
        return line;
    }
}
