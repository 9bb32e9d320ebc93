using System.Net;
using KvmPS.Contract;

namespace KvmPS.Vmm.Vnc;

/// <summary>
/// The VNC server's listeners and password, checked: at least one listener, a TCP address other than loopback only
/// with a password file, the password file readable and not empty. Errors name the setting (config field or flag).
/// </summary>
public sealed record VncSettings(string? UnixPath, IPEndPoint? Tcp, string? PasswordFile, string? Password)
{
    /// <summary>The TCP listener as configured (ADDR:PORT), for the canonical configuration.</summary>
    public string? TcpText { get; init; }

    /// <summary>Checks <paramref name="spec"/>; <paramref name="where"/> names a field ("unix_path", "tcp", "password_file") for messages.</summary>
    public static VncSettings From(VncSpec spec, Func<string, string> where)
    {
        if (spec.UnixPath is null && spec.Tcp is null)
            throw new VmmConfigException($"{where("unix_path")}: the VNC server needs a listener: unix_path, tcp or both.");
        if (spec.UnixPath is "") throw new VmmConfigException($"{where("unix_path")}: the path is empty.");
        IPEndPoint? tcp = spec.Tcp is { } t ? ParseTcp(t, where("tcp")) : null;
        string? password = null;
        if (spec.PasswordFile is { } file)
        {
            password = VncAuthentication.ReadPasswordFile(file, where("password_file"));
            try { VncAuthentication.Response(password, new byte[VncAuthentication.ChallengeBytes]); }
            catch (System.Security.Cryptography.CryptographicException e)
            {
                throw new VmmConfigException($"{where("password_file")}: the password in {file} cannot be used as a DES key ({e.Message}); choose another.");
            }
        }
        if (tcp is not null && !IPAddress.IsLoopback(tcp.Address) && password is null)
            throw new VmmConfigException($"{where("tcp")}: {spec.Tcp} is not a loopback address, so the VNC server needs a password: set password_file too.");
        return new VncSettings(spec.UnixPath, tcp, spec.PasswordFile, password) { TcpText = spec.Tcp };
    }

    /// <summary>Without the password.</summary>
    public override string ToString() => $"VncSettings {{ UnixPath = {UnixPath}, Tcp = {Tcp}, PasswordFile = {PasswordFile} }}";

    /// <summary>ADDR:PORT ([v6]:PORT, localhost:PORT); port 0 picks a free one (display.get tells which).</summary>
    public static IPEndPoint ParseTcp(string text, string where)
    {
        string t = text.StartsWith("localhost:", StringComparison.OrdinalIgnoreCase) ? "127.0.0.1" + text[9..] : text;
        int colon = t.LastIndexOf(':');
        if (colon <= 0 || !IPEndPoint.TryParse(t, out var endpoint) || !ushort.TryParse(t[(colon + 1)..], out _))
            throw new VmmConfigException($"{where}: '{text}' is not ADDR:PORT (e.g. 127.0.0.1:5901 or [::1]:5901).");
        return endpoint;
    }

    /// <summary>
    /// Parses <c>--display vnc,unix=PATH[,tcp=ADDR:PORT][,password_file=FILE]</c> into the config record's field.
    /// </summary>
    public static VncSpec ParseDisplayFlag(string value, string flag)
    {
        var parts = value.Split(',');
        if (parts[0] != "vnc") throw new VmmConfigException($"{flag}: '{parts[0]}' is not a display kind (vnc).");
        string? unix = null, tcp = null, password = null;
        foreach (string part in parts.Skip(1))
        {
            int eq = part.IndexOf('=');
            if (eq <= 0) throw new VmmConfigException($"{flag}: '{part}' is not KEY=VALUE (unix, tcp, password_file).");
            string key = part[..eq], v = part[(eq + 1)..];
            switch (key)
            {
                case "unix": unix = v; break;
                case "tcp": tcp = v; break;
                case "password_file" or "password-file": password = v; break;
                default: throw new VmmConfigException($"{flag}: unknown key '{key}' (unix, tcp, password_file).");
            }
        }
        return new VncSpec { UnixPath = unix, Tcp = tcp, PasswordFile = password };
    }
}
