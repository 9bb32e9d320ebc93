using Microsoft.Win32.SafeHandles;

namespace KvmPS.Devices.Config;

/// <summary>
/// Open files a device uses instead of opening its path (docs/vmm.md, "Passing open files"): passed by management with a
/// <c>device.add</c> (SCM_RIGHTS), or kept by the VMM from the previous boot across a guest reboot. The device takes
/// them (<see cref="TakeAll"/>); whatever is not taken is closed by <see cref="Dispose"/>, so none leaks when a
/// request fails. A reboot may also keep a live connection (a vfio-user client: <see cref="TakeConnection{T}"/>),
/// which a jailed VMM could not open again by path.
/// </summary>
public sealed class PassedFiles : IDisposable
{
    private readonly List<SafeFileHandle> _files;
    private IDisposable? _connection;

    public PassedFiles(IEnumerable<SafeFileHandle> files) => _files = [.. files];

    /// <summary>A connection the previous boot's device kept open, as it is (no files).</summary>
    public PassedFiles(IDisposable connection) : this([]) => _connection = connection;

    public static PassedFiles None => new([]);

    /// <summary>Files not taken yet (a kept connection not counted).</summary>
    public int Count { get { lock (_files) return _files.Count; } }

    /// <summary>The kept connection if it is a <typeparamref name="T"/>, now the caller's to dispose; else null (and it stays here).</summary>
    public T? TakeConnection<T>() where T : class, IDisposable
    {
        lock (_files)
        {
            if (_connection is not T connection) return null;
            _connection = null;
            return connection;
        }
    }

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
        IDisposable? connection;
        lock (_files) (connection, _connection) = (_connection, null);
        connection?.Dispose();
    }
}
