using KvmPS.Migration;

namespace KvmPS.Vmm;

/// <summary>
/// <c>kvmps-vmm --incoming tcp:ADDR:PORT|unix:PATH [configuration flags]</c>: instead of booting, wait for one
/// migration stream and run the VM it brings (docs/migration.md). The machine is configured as for a normal start
/// and must match the source's.
/// </summary>
public static class VmmIncoming
{
    /// <summary>Takes <c>--incoming URI</c> out of <paramref name="args"/>; null (args unchanged) without it.</summary>
    public static MigrationEndpoint? FromArgs(string[] args, out string[] rest)
    {
        string? uri = null;
        var others = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a == "--incoming")
            {
                if (i + 1 >= args.Length) throw new VmmConfigException("--incoming needs a value (tcp:ADDR:PORT or unix:PATH).");
                uri = args[++i];
            }
            else if (a.StartsWith("--incoming=", StringComparison.Ordinal)) uri = a["--incoming=".Length..];
            else others.Add(a);
        }
        rest = others.ToArray();
        if (uri is null) return null;
        try { return MigrationEndpoint.Parse(uri); }
        catch (ArgumentException e) { throw new VmmConfigException($"--incoming: {e.Message}"); }
    }

    /// <summary>
    /// Takes <c>--incoming-token-file FILE</c> out of <paramref name="args"/>: the token a sender must present first
    /// (<see cref="MigrationToken"/>). The file must be mode 0600; it is deleted once read (the token is one-time).
    /// </summary>
    public static string? TokenFromArgs(string[] args, out string[] rest)
    {
        string? path = null;
        var others = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a == "--incoming-token-file")
            {
                if (i + 1 >= args.Length) throw new VmmConfigException("--incoming-token-file needs a file path.");
                path = args[++i];
            }
            else if (a.StartsWith("--incoming-token-file=", StringComparison.Ordinal)) path = a["--incoming-token-file=".Length..];
            else others.Add(a);
        }
        rest = others.ToArray();
        if (path is null) return null;
        try
        {
            string token = MigrationToken.ReadFile(path);
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            return token;
        }
        catch (ArgumentException e) { throw new VmmConfigException($"--incoming-token-file: {e.Message}"); }
    }
}
