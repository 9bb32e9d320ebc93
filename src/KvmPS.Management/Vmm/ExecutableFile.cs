namespace KvmPS.Management.Vmm;

/// <summary>
/// Execute permission of the programs the module carries (<c>bin/kvmps-vmm</c>, <c>bin/kvmps</c>). A module
/// installed from its .nupkg by Install-PSResource arrives without execute bits, because zip entries carry none.
/// </summary>
public static class ExecutableFile
{
    private const UnixFileMode AnyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;

    /// <summary>Whether <paramref name="path"/> is a file someone may execute.</summary>
    public static bool IsExecutable(string path)
    {
        try
        {
            if (OperatingSystem.IsWindows())
                return File.Exists(path);
            return File.Exists(path) && (File.GetUnixFileMode(path) & AnyExecute) != 0;
        }
        catch (IOException)
        {
            return false;
        }
    }

    /// <summary>
    /// Gives execute permission to whoever may read <paramref name="path"/> (u+x for u+r, and so on), the way
    /// an unpacked archive would have had it. False when the file is not ours to change.
    /// </summary>
    public static bool TryMakeExecutable(string path)
    {
        if (OperatingSystem.IsWindows())
            return File.Exists(path);
        try
        {
            var mode = File.GetUnixFileMode(path);
            if ((mode & AnyExecute) != 0)
                return true;
            if ((mode & UnixFileMode.UserRead) != 0) mode |= UnixFileMode.UserExecute;
            if ((mode & UnixFileMode.GroupRead) != 0) mode |= UnixFileMode.GroupExecute;
            if ((mode & UnixFileMode.OtherRead) != 0) mode |= UnixFileMode.OtherExecute;
            File.SetUnixFileMode(path, mode);
            return (File.GetUnixFileMode(path) & AnyExecute) != 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
