using System.Diagnostics;

namespace KvmPS.Bench;

/// <summary>
/// Where the two ends of a migration figure run: both in this network namespace over TCP loopback, or each in its own
/// network namespace, joined by a veth pair (what the two-host tests use: a real link with a 1500-byte MTU and the
/// kernel's TCP stack on both sides). The namespaces are made by <see cref="Namespaces"/> (the bench runs as root) and
/// removed, with the pair, on dispose. Control sockets are files, which both namespaces reach.
/// </summary>
public sealed class Link : IDisposable
{
    private const string SourceAddress = "10.77.0.1", PeerAddress = "10.77.0.2";
    private readonly string? _sourceNs, _destinationNs;

    private Link(string? sourceNs, string? destinationNs, string destinationAddress)
    {
        _sourceNs = sourceNs;
        _destinationNs = destinationNs;
        DestinationAddress = destinationAddress;
    }

    public static Link Loopback { get; } = new(null, null, "127.0.0.1");

    /// <summary>The address the source connects to.</summary>
    public string DestinationAddress { get; }

    public static Link Namespaces()
    {
        string tag = Environment.ProcessId.ToString();
        string src = $"kvb-src-{tag}", dst = $"kvb-dst-{tag}", vs = $"kvbs{tag}", vd = $"kvbd{tag}";
        var link = new Link(src, dst, PeerAddress);
        try
        {
            Ip("netns", "add", src);
            Ip("netns", "add", dst);
            Ip("link", "add", vs, "type", "veth", "peer", "name", vd);
            Ip("link", "set", vs, "netns", src);
            Ip("link", "set", vd, "netns", dst);
            Ip("-n", src, "addr", "add", SourceAddress + "/24", "dev", vs);
            Ip("-n", dst, "addr", "add", PeerAddress + "/24", "dev", vd);
            foreach (var (ns, dev) in new[] { (src, vs), (dst, vd), (src, "lo"), (dst, "lo") }) Ip("-n", ns, "link", "set", dev, "up");
            return link;
        }
        catch { link.Dispose(); throw; }
    }

    public (string File, IEnumerable<string> Args) Source(string file, IEnumerable<string> args) => Wrap(_sourceNs, file, args);
    public (string File, IEnumerable<string> Args) Destination(string file, IEnumerable<string> args) => Wrap(_destinationNs, file, args);

    // `ip netns exec` enters the namespace and execs the program: the process started is the VMM itself.
    private static (string, IEnumerable<string>) Wrap(string? ns, string file, IEnumerable<string> args) =>
        ns is null ? (file, args) : ("ip", ["netns", "exec", ns, file, .. args]);

    private static void Ip(params string[] args)
    {
        var psi = new ProcessStartInfo("ip") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({p.ExitCode}): {err.Trim()}");
    }

    public void Dispose()
    {
        // Deleting a namespace destroys the veth end in it, and so the pair.
        foreach (var ns in new[] { _sourceNs, _destinationNs })
            if (ns is not null)
                try { Ip("netns", "del", ns); } catch (InvalidOperationException) { }
    }
}
