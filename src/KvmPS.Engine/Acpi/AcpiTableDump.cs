using System.Text;
using KvmPS.Vmm;

namespace KvmPS.Acpi;

/// <summary>
/// <c>kvmps-vmm --acpi-tables-out DIR</c>: writes the ACPI tables the configured VM would get, one file per signature
/// (<c>DSDT.dat</c>, <c>APIC.dat</c>, <c>FACP.dat</c>, ...), in the form <c>acpidump -b</c> gives from inside a guest,
/// so <c>iasl -d</c> and <c>acpiexec</c> read them. The RSDP is left out: it is a pointer structure without a table
/// header (iasl cannot load it from a file), and its links are what the tables' addresses already show.
/// </summary>
public static class AcpiTableDump
{
    public const string Flag = "--acpi-tables-out";

    /// <summary>Takes <c>--acpi-tables-out DIR</c> out of <paramref name="args"/>; null (args unchanged) without it.</summary>
    public static string? FromArgs(string[] args, out string[] rest)
    {
        string? dir = null;
        var others = new List<string>(args.Length);
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (a == Flag)
            {
                if (i + 1 >= args.Length) throw new VmmConfigException($"{Flag} needs a directory.");
                dir = args[++i];
            }
            else if (a.StartsWith(Flag + "=", StringComparison.Ordinal)) dir = a[(Flag.Length + 1)..];
            else others.Add(a);
        }
        if (dir is { Length: 0 }) throw new VmmConfigException($"{Flag}: the directory name is empty.");
        rest = others.ToArray();
        return dir;
    }

    private static bool IsRsdp(ReadOnlySpan<byte> table) => table.Length >= 8 && table[..8].SequenceEqual("RSD PTR "u8);

    /// <summary>The file name for a table: its signature.</summary>
    public static string FileNameFor(ReadOnlySpan<byte> table)
    {
        if (table.Length < 36 || IsRsdp(table)) throw new ArgumentException("not an ACPI table with a 36-byte header.", nameof(table));
        return Encoding.ASCII.GetString(table[..4]) + ".dat";
    }

    /// <summary>
    /// Writes every table of <paramref name="config"/> into <paramref name="directory"/> (created if missing) and returns
    /// the paths. A directory that cannot be written is a <see cref="VmmResourceException"/> naming it.
    /// </summary>
    public static IReadOnlyList<string> Write(AcpiConfig config, string directory)
    {
        var tables = AcpiTables.Build(config);
        var written = new List<string>(tables.Count);
        try
        {
            Directory.CreateDirectory(directory);
            foreach (var (_, bytes) in tables)
            {
                if (IsRsdp(bytes)) continue;
                string path = Path.Combine(directory, FileNameFor(bytes));
                if (written.Contains(path)) throw new InvalidOperationException($"two ACPI tables have the file name {Path.GetFileName(path)}.");
                File.WriteAllBytes(path, bytes);
                written.Add(path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new VmmResourceException($"{Flag} {directory}: cannot write the ACPI tables: {IoErrorText.Describe(e)}");
        }
        return written;
    }
}
