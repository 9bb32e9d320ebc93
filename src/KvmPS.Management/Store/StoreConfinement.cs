using KvmPS.Interop;

// Unix file modes: KvmPS runs on Linux only (KVM).
#pragma warning disable CA1416

namespace KvmPS.Management.Store;

/// <summary>
/// Who may read and write the store: only its owner (root, or the user running KvmPS for a per-user store). Folders are
/// created 0700 and files 0600 (definitions, vmm.log, serial logs, snapshots, disk images the store creates).
/// <para>
/// On open the store root and <c>vms/</c> are checked (docs/confinement.md):
/// </para>
/// <list type="bullet">
/// <item>owned by another user than root or the current user: refused (<see cref="StoreConfinementException"/>): that user could plant links or read every guest's disks;</item>
/// <item>writable by group or others: refused, for the same reason; the fix (chmod) is named;</item>
/// <item>ours and only readable by others (a store made by an older KvmPS, 0755/0644): tightened to 0700/0600 in place,
/// recursively, without following links: nobody else could have changed anything in it, so nothing is lost by fixing it;</item>
/// <item>on a file system that cannot hold owner-only modes (vfat, some network mounts; the mode read back after the
/// chmod is still open): refused.</item>
/// </list>
/// </summary>
public static class StoreConfinement
{
    /// <summary>rwx------ for every folder of the store.</summary>
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>rw------- for every file of the store.</summary>
    public const UnixFileMode FileMode = NoFollowFile.OwnerOnly;

    private const uint GroupOrOtherWritable = 0b000_010_010; // 0022
    private const uint GroupOrOtherAny = 0b000_111_111;      // 0077

    /// <summary>Creates <paramref name="path"/> (and missing parents) as 0700; an existing folder is left as it is.</summary>
    public static DirectoryInfo CreateDirectory(string path) => Directory.CreateDirectory(path, DirectoryMode);

    /// <summary>
    /// Creates the store root and <c>vms/</c> if needed and checks (or tightens, see the class) owner and mode of both.
    /// <paramref name="effectiveUid"/>: the user KvmPS runs as (injected by tests).
    /// </summary>
    public static void SecureRoot(string root, string vmsDirectory, uint effectiveUid)
    {
        CreateDirectory(root);
        // The root itself may be a link an admin made (/var/lib/kvmps -> /srv/kvmps): the folder it leads to is judged.
        // Below it nothing is followed.
        var realRoot = ResolvedPath.Of(root);
        if (CheckFolder(realRoot, effectiveUid))
            TightenTree(realRoot);
        CreateDirectory(vmsDirectory);
        if (CheckFolder(vmsDirectory, effectiveUid))
            TightenTree(vmsDirectory);
    }

    /// <summary>
    /// Refuses a folder with a foreign owner or group/other write access; returns true (after tightening the folder
    /// itself to 0700) when it is ours but readable by others. Pure decision in <see cref="Judge"/>.
    /// </summary>
    private static bool CheckFolder(string path, uint effectiveUid)
    {
        var status = FileOwnership.Of(path) ?? throw new StoreConfinementException(path, "it does not exist", $"create it: mkdir -m 700 '{path}'");
        var verdict = Judge(path, status, effectiveUid);
        if (verdict == FolderVerdict.Secure)
            return false;
        const string Fix = "put the store on a Linux file system (ext4, xfs, btrfs, tmpfs) or point KVMPS_HOME there";
        try
        {
            File.SetUnixFileMode(path, DirectoryMode);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StoreConfinementException(path, $"its mode {Octal(status.Permissions)} lets others read it and cannot be changed to 0700 ({e.Message}): its file system cannot hold owner-only modes", Fix);
        }
        var after = FileOwnership.Of(path)!.Value;
        if ((after.Permissions & GroupOrOtherAny) != 0)
            throw new StoreConfinementException(path,
                $"its file system keeps mode {Octal(after.Permissions)} after chmod 700: it cannot hold owner-only modes (vfat, exfat and some network mounts cannot)", Fix);
        return true;
    }

    /// <summary>What to do with a store folder of this owner and mode (throws for a refusal).</summary>
    public static FolderVerdict Judge(string path, FileOwnership status, uint effectiveUid)
    {
        if (status.IsSymlink || !status.IsDirectory)
            throw new StoreConfinementException(path, status.IsSymlink ? "it is a symbolic link" : "it is not a folder", "point KVMPS_HOME at a real folder");
        if (status.OwnerUid != effectiveUid && status.OwnerUid != 0)
            throw new StoreConfinementException(path, $"it is owned by uid {status.OwnerUid}, not by root or the user running KvmPS (uid {effectiveUid}): that user could redirect or read every VM's files",
                $"give it to the right user (chown -R {effectiveUid} '{path}') or use another store (KVMPS_HOME)");
        if ((status.Permissions & GroupOrOtherWritable) != 0)
            throw new StoreConfinementException(path, $"it is writable by group or others (mode {Octal(status.Permissions)}): another user could plant links or files in it",
                $"check it for files you did not put there, then chmod 700 '{path}'");
        return (status.Permissions & GroupOrOtherAny) != 0 ? FolderVerdict.TooOpen : FolderVerdict.Secure;
    }

    /// <summary>Folders 0700 and files 0600 below <paramref name="root"/>; links are neither followed nor changed.</summary>
    private static void TightenTree(string root)
    {
        foreach (var entry in new DirectoryInfo(root).EnumerateFileSystemInfos("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint, IgnoreInaccessible = true }))
        {
            if (entry.LinkTarget is not null)
                continue;
            if (entry is DirectoryInfo)
                entry.UnixFileMode = DirectoryMode;
            else if (FileOwnership.Of(entry.FullName) is { IsRegularFile: true })
                entry.UnixFileMode = FileMode;
        }
    }

    /// <summary>
    /// Makes a file the store just created (or a VMM wrote: snapshot files) 0600. For files whose creator does not take a
    /// mode (disk images from KvmPS.Storage); a link is refused, not followed.
    /// </summary>
    public static void RestrictFile(string path)
    {
        if (FileOwnership.Of(path) is { IsSymlink: true })
            throw new SymlinkRefusedException(path);
        File.SetUnixFileMode(path, FileMode);
    }

    /// <summary>0600 for every regular file and 0700 for every folder below (and including) <paramref name="directory"/>; links untouched.</summary>
    public static void RestrictTree(string directory)
    {
        if (FileOwnership.Of(directory) is not { IsDirectory: true })
            return;
        File.SetUnixFileMode(directory, DirectoryMode);
        TightenTree(directory);
    }

    private static string Octal(uint permissions) => "0" + Convert.ToString(permissions, 8);
}

/// <summary>The outcome of <see cref="StoreConfinement.Judge"/> for a folder it does not refuse.</summary>
public enum FolderVerdict
{
    /// <summary>Owned by root or us, 0700 (or narrower).</summary>
    Secure,
    /// <summary>Ours, readable or searchable by others but not writable: tightened to 0700.</summary>
    TooOpen,
}

/// <summary>The store (or a folder of it) has an owner or mode that would let another user read or redirect VM files.</summary>
public sealed class StoreConfinementException : VmStoreException
{
    public StoreConfinementException(string path, string reason, string fix)
        : base($"The store folder '{path}' is refused: {reason}. Fix: {fix}.")
    {
        Path = path;
        Reason = reason;
        Fix = fix;
    }

    public string Path { get; }
    public string Reason { get; }
    public string Fix { get; }
}
