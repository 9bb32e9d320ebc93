using System.Reflection;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.PowerShell.Internal;

namespace KvmPS.PowerShell.Tests;

internal static class Repo
{
    public static string Root { get; } = typeof(Repo).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepoRoot").Value!;

    public static string Docs => Path.Combine(Root, "docs", "en-US");
    public static string Manifest => Path.Combine(Root, "KvmPS.psd1");
    public static Assembly Module => typeof(KvmVm).Assembly;
}

/// <summary>Collects what a cmdlet writes; ShouldProcess answers <see cref="Confirm"/>.</summary>
internal sealed class RecordingOutput : ICmdletOutput
{
    public bool Confirm { get; set; } = true;
    public List<object?> Objects { get; } = new();
    public List<KvmError> Errors { get; } = new();
    public List<string> Warnings { get; } = new();
    public List<string> Verbose { get; } = new();
    public List<(string Target, string Action)> ShouldProcessCalls { get; } = new();

    public void WriteObject(object? value) => Objects.Add(value);
    public void WriteError(KvmError error) => Errors.Add(error);
    public void WriteWarning(string message) => Warnings.Add(message);
    public void WriteVerbose(string message) => Verbose.Add(message);
    public void WriteProgress(string activity, string status, int percentComplete, bool completed) { }

    public bool ShouldProcess(string target, string action)
    {
        ShouldProcessCalls.Add((target, action));
        return Confirm;
    }
}

/// <summary>A store in a temp folder, removed on dispose.</summary>
internal sealed class TempStore : IDisposable
{
    public TempStore()
    {
        // Short path: the control socket path must fit in 107 bytes.
        Root = Path.Combine(Path.GetTempPath(), "kps-" + Guid.NewGuid().ToString("N")[..8]);
        Store = VmStore.Open(Root);
        Manager = new VmManager(Store, diskImageCreator: new StorageDiskImageCreator());
    }

    public string Root { get; }
    public VmStore Store { get; }
    public VmManager Manager { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
