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
}
