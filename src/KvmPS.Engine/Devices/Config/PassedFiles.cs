using Microsoft.Win32.SafeHandles;

namespace KvmPS.Devices.Config;

/// <summary>
/// Open files a device uses instead of opening its path (docs/vmm.md, "Passing open files"): passed by management with a
/// <c>device.add</c> (SCM_RIGHTS), or kept by the VMM from the previous boot across a guest reboot. The device takes
/// them (<see cref="TakeAll"/>); whatever is not taken is closed by <see cref="Dispose"/>, so none leaks when a
/// request fails.
/// </summary>
public sealed class PassedFiles : IDisposable
{
    private readonly List<SafeFileHandle> _files;

    public PassedFiles(IEnumerable<SafeFileHandle> files) => _files = [.. files];

    public static PassedFiles None => new([]);

    /// <summary>Files not taken yet.</summary>
    public int Count { get { lock (_files) return _files.Count; } }

    /// <summary>Every file, now the caller's to close.</summary>
    public IReadOnlyList<SafeFileHandle> TakeAll()
    {
        lock (_files)
        {
            var all = _files.ToList();
            _files.Clear();
            return all;
        }
    }

    /// <summary>Closes what no device took.</summary>
    public void Dispose()
    {
        foreach (var file in TakeAll()) file.Dispose();
    }
}
