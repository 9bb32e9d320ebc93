using KvmPS.Fuzz.Targets;
using SharpFuzz;

namespace KvmPS.Fuzz;

/// <summary>
/// KvmPS.Fuzz TARGET                  run TARGET under afl-fuzz (SharpFuzz's in-process loop; ./build.sh fuzz starts it)
/// KvmPS.Fuzz replay TARGET PATH...   run TARGET once per file (PATH: files or folders), print what escapes; exit 1 if any
/// KvmPS.Fuzz seeds TARGET|all DIR    write the generated seed corpus to DIR/TARGET/
/// KvmPS.Fuzz list                    the targets, one a line
/// </summary>
internal static class Program
{
    public static readonly string[] Targets = ["virtqueue", "block", "net", "rng", "balloon", "vsock", "control", "manifest", "qcow2"];

    public static IFuzzTarget Create(string name) => name switch
    {
        "virtqueue" => new VirtQueueTarget(),
        "block" or "net" or "rng" or "balloon" or "vsock" => new VirtioTarget(name),
        "control" => new ControlTarget(),
        "manifest" => new ManifestTarget(),
        "qcow2" => new Qcow2Target(),
        "selftest" => new SelfTestTarget(),
        _ => throw new ArgumentException($"unknown fuzz target '{name}' (known: {string.Join(", ", Targets)})"),
    };

    private static int Main(string[] args)
    {
        try
        {
            switch (args)
            {
                case ["list"]:
                    foreach (var t in Targets) Console.WriteLine(t);
                    return 0;
                case ["seeds", var which, var dir]:
                    foreach (var t in which == "all" ? Targets : [which]) WriteSeeds(Create(t), Path.Combine(dir, t));
                    return 0;
                case ["replay", var name, .. var paths] when paths.Length > 0:
                    return Replay(Create(name), paths);
                case [var name]:
                {
                    if (!Targets.Contains(name) && name != "selftest") throw new ArgumentException($"unknown fuzz target '{name}' (known: {string.Join(", ", Targets)})");
                    // Made inside the loop: instrumented code (device constructors) must not run before SharpFuzz has
                    // set up afl-fuzz's coverage map.
                    IFuzzTarget? target = null;
                    var buffer = new MemoryStream();
                    Fuzzer.Run(stream =>
                    {
                        target ??= Create(name);
                        buffer.SetLength(0);
                        stream.CopyTo(buffer);
                        target.Run(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
                    });
                    return 0;
                }
                default:
                    Console.Error.WriteLine("usage: KvmPS.Fuzz TARGET | replay TARGET PATH... | seeds TARGET|all DIR | list");
                    return 2;
            }
        }
        catch (ArgumentException e) when (args.Length < 2 || args[0] != "replay")
        {
            Console.Error.WriteLine($"KvmPS.Fuzz: {e.Message}");
            return 2;
        }
    }

    private static void WriteSeeds(IFuzzTarget target, string dir)
    {
        Directory.CreateDirectory(dir);
        int n = 0;
        foreach (var (name, data) in target.Seeds()) { File.WriteAllBytes(Path.Combine(dir, name), data); n++; }
        Console.WriteLine($"seeds: {n} inputs for {target.Name} in {dir}");
    }

    private static int Replay(IFuzzTarget target, string[] paths)
    {
        var files = paths.SelectMany(p => Directory.Exists(p) ? Directory.GetFiles(p, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal) : (IEnumerable<string>)[p]).ToList();
        int bad = 0;
        foreach (var f in files)
        {
            try { target.Run(File.ReadAllBytes(f)); }
            catch (Exception e)
            {
                bad++;
                Console.WriteLine($"{f}: {e.GetType().FullName}: {e.Message}");
                Console.WriteLine(e.StackTrace);
            }
        }
        Console.WriteLine($"replay {target.Name}: {files.Count} inputs, {bad} escaped");
        return bad == 0 ? 0 : 1;
    }
}

internal static class FuzzPaths
{
    /// <summary>The repository root: the folder above tests/ that holds KvmPS.sln.</summary>
    public static string RepoRoot
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "KvmPS.sln"))) return d.FullName;
            for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "KvmPS.sln"))) return d.FullName;
            throw new DirectoryNotFoundException("the KvmPS repository root (KvmPS.sln) was not found");
        }
    }
}
