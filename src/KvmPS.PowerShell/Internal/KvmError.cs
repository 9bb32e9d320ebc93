using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Snapshots;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;
using KvmPS.Storage;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// An error a cmdlet reports: the stable error id (PowerShell appends the cmdlet class, giving e.g.
/// <c>VmNotFound,KvmPS.Commands.GetKvmVmCommand</c>), its category and the offending object.
/// </summary>
/// <remarks><see cref="Message"/>, when set, is what the user reads (ErrorDetails) instead of the exception's own
/// message, which names schema keys; scripts still get the typed exception.</remarks>
internal sealed record KvmError(Exception Exception, string ErrorId, ErrorCategory Category, object? Target, string? Message = null)
{
    public ErrorRecord ToErrorRecord()
    {
        var record = new ErrorRecord(Exception, ErrorId, Category, Target);
        if (Message is not null)
            record.ErrorDetails = new ErrorDetails(Message);
        return record;
    }
}

/// <summary>A parameter value the cmdlet could not use; names the parameter as typed and carries the value.</summary>
internal sealed class KvmParameterException : ArgumentException
{
    // ParamName stays unset: ArgumentException would append "(Parameter 'X')" to a message that already starts with -X.
    public KvmParameterException(string parameter, object? value, string reason, Exception? inner = null)
        : base($"-{parameter}: {reason}", inner)
    {
        Parameter = parameter;
        Value = value;
    }

    private KvmParameterException(string parameter, object? value, string message, bool _)
        : base(message)
    {
        Parameter = parameter;
        Value = value;
    }

    public string Parameter { get; }
    public object? Value { get; }

    /// <summary>A combination of parameters is missing or not allowed; <paramref name="message"/> names them all.</summary>
    public static KvmParameterException Combination(string parameter, object? value, string message) => new(parameter, value, message, true);

    /// <summary>Parses a parameter value; a format error names the parameter.</summary>
    public static T Parse<T>(string parameter, string text, Func<string, T> parse)
    {
        try
        {
            return parse(text);
        }
        catch (ValueFormatException e)
        {
            throw new KvmParameterException(parameter, text, e.Message, e);
        }
    }
}

/// <summary>Connect-KvmConsole was run with standard input redirected: there are no keys to pass to the guest.</summary>
internal sealed class InteractiveTerminalRequiredException(string vmName)
    : InvalidOperationException($"Connect-KvmConsole needs an interactive terminal: standard input is redirected. Use Get-KvmConsoleLog -Name {vmName} to read the console output.")
{
    public string VmName { get; } = vmName;
}

/// <summary>ShouldProcess had to ask, and the host cannot prompt (non-interactive session).</summary>
internal sealed class ConfirmationNotPossibleException : InvalidOperationException
{
    public ConfirmationNotPossibleException(string target, string action, Exception inner)
        : base($"Cannot ask whether to perform \"{action}\" on \"{target}\": this session cannot show a confirmation prompt (it is non-interactive). " +
               "Pass -Confirm:$false (or -Force where the cmdlet has it) to go ahead without asking, or -WhatIf to see what would be done.", inner)
    {
        Target = target;
        Action = action;
    }

    public string Target { get; }
    public string Action { get; }
}

/// <summary>The stable error ids of the module (documented in about_KvmPS).</summary>
internal static class KvmErrorIds
{
    public const string VmNotFound = "VmNotFound";
    public const string VmAlreadyExists = "VmAlreadyExists";
    public const string InvalidVmState = "InvalidVmState";
    public const string InvalidVmSetting = "InvalidVmSetting";
    public const string InvalidVmDefinition = "InvalidVmDefinition";
    public const string VmFeatureNotSupported = "VmFeatureNotSupported";
    public const string VmStartFailed = "VmStartFailed";
    public const string VmmUpgradeFailed = "VmmUpgradeFailed";
    public const string VmMoveFailed = "VmMoveFailed";
    public const string VmmNotFound = "VmmNotFound";
    public const string VmmNotResponding = "VmmNotResponding";
    public const string VmNotRunning = "VmNotRunning";
    public const string VmmRequestFailed = "VmmRequestFailed";
    public const string StoreLocked = "StoreLocked";
    public const string StoreCorrupt = "StoreCorrupt";
    public const string StoreError = "StoreError";
    public const string InvalidValue = "InvalidValue";
    public const string DiskImageInUse = "DiskImageInUse";
    public const string DiskImageFailed = "DiskImageFailed";
    public const string DiskImageExists = "DiskImageExists";
    public const string StoragePoolNotFound = "StoragePoolNotFound";
    public const string StoragePoolExists = "StoragePoolExists";
    public const string StoragePoolInUse = "StoragePoolInUse";
    public const string InvalidStoragePoolSetting = "InvalidStoragePoolSetting";
    public const string StorageVolumeNotFound = "StorageVolumeNotFound";
    public const string StorageVolumeExists = "StorageVolumeExists";
    public const string StorageVolumeInUse = "StorageVolumeInUse";
    public const string InvalidStorageVolumeSetting = "InvalidStorageVolumeSetting";
    public const string NetworkNotFound = "NetworkNotFound";
    public const string NetworkExists = "NetworkExists";
    public const string NetworkInUse = "NetworkInUse";
    public const string InvalidNetworkSetting = "InvalidNetworkSetting";
    public const string NetworkHostFailed = "NetworkHostFailed";
    public const string DeviceNotFound = "DeviceNotFound";
    public const string DiskImageNotFound = "DiskImageNotFound";
    public const string DeviceAlreadyAttached = "DeviceAlreadyAttached";
    public const string DeviceHotplugNotSupported = "DeviceHotplugNotSupported";
    public const string DeviceHotplugRefused = "DeviceHotplugRefused";
    public const string DeviceRemovalTimedOut = "DeviceRemovalTimedOut";
    public const string PciDeviceUnusable = "PciDeviceUnusable";
    public const string HostDeviceNotFound = "HostDeviceNotFound";
    public const string HostSriovRefused = "HostSriovRefused";
    public const string HostSriovFailed = "HostSriovFailed";
    public const string AmbiguousVm = "AmbiguousVm";
    public const string ConsoleUnavailable = "ConsoleUnavailable";
    public const string PermissionDenied = "PermissionDenied";
    public const string IOError = "IOError";
    public const string ConfirmationNotPossible = "ConfirmationNotPossible";
    public const string SnapshotNotFound = "SnapshotNotFound";
    public const string SnapshotAlreadyExists = "SnapshotAlreadyExists";
    public const string SnapshotCorrupt = "SnapshotCorrupt";
    public const string RawDiskNotCheckpointable = "RawDiskNotCheckpointable";
    public const string VmExportFailed = "VmExportFailed";
    public const string VmImportFailed = "VmImportFailed";
    public const string InvalidIsoImage = "InvalidIsoImage";
    public const string VncFailed = "VncFailed";
    public const string Unexpected = "UnexpectedError";
}

/// <summary>Maps management and storage exceptions to <see cref="KvmError"/>s.</summary>
internal static class KvmErrorMapping
{
    /// <param name="parameterFor">Schema key → the parameter the user typed for it (null: none); see <see cref="CmdletParameterNames"/>.</param>
    public static KvmError FromException(Exception exception, object? target, Func<string, string?>? parameterFor = null)
    {
        ArgumentNullException.ThrowIfNull(exception);
        var error = Classify(exception, target);
        return parameterFor is null ? error : error with { Message = NameParameters(exception, parameterFor) };
    }

    /// <summary>The message with schema keys renamed to parameters, or null when it names no key to rename.</summary>
    private static string? NameParameters(Exception exception, Func<string, string?> parameterFor)
    {
        if (exception is DiskImageNotFoundException missing && parameterFor("Disks.SizeBytes") is { } size)
            return $"Disk image '{missing.Path}' does not exist; give -{size} to create it.";
        var (vm, property, reason) = exception switch
        {
            VmDefinitionException e => (e.VmName, e.Property, e.Reason),
            ManagementValidationException e => (e.VmName, e.Property, e.Reason),
            _ => (null, null, null),
        };
        if (property is null || reason is null)
            return null;
        var parameter = parameterFor(property);
        var renamed = CmdletParameterNames.Rename(reason, parameterFor);
        if (parameter is null && renamed == reason)
            return null;
        var subject = parameter is null ? property : "-" + parameter;
        return string.IsNullOrEmpty(vm) ? $"{subject}: {renamed}" : $"VM '{VmName.ForDisplay(vm)}': {subject}: {renamed}";
    }

    private static KvmError Classify(Exception exception, object? target)
    {
        return exception switch
        {
            ConfirmationNotPossibleException e => new(e, KvmErrorIds.ConfirmationNotPossible, ErrorCategory.InvalidOperation, target ?? e.Target),
            InteractiveTerminalRequiredException e => new(e, KvmErrorIds.ConsoleUnavailable, ErrorCategory.InvalidOperation, target ?? e.VmName),
            KvmParameterException e => new(e, KvmErrorIds.InvalidValue, ErrorCategory.InvalidArgument, e.Value ?? target),
            KvmPS.Management.Remote.RemoteHostException e => RemoteHostErrors.Classify(e, target),
            VmDeviceNotFoundException e => new(e, KvmErrorIds.DeviceNotFound, ErrorCategory.ObjectNotFound, e.Device),
            VmDeviceAlreadyAttachedException e => new(e, KvmErrorIds.DeviceAlreadyAttached, ErrorCategory.ResourceExists, e.Device),
            DiskImageNotFoundException e => new(e, KvmErrorIds.DiskImageNotFound, ErrorCategory.ObjectNotFound, e.Path),
            VmDeviceHotplugNotSupportedException e => new(e, KvmErrorIds.DeviceHotplugNotSupported, ErrorCategory.NotImplemented, e.Device),
            VmDeviceHotplugRefusedException e => new(e, KvmErrorIds.DeviceHotplugRefused, ErrorCategory.InvalidOperation, e.Device),
            VmDeviceRemovalTimeoutException e => new(e, KvmErrorIds.DeviceRemovalTimedOut, ErrorCategory.OperationTimeout, e.Device),
            KvmPS.Management.Pools.StoragePoolNotFoundException e => new(e, KvmErrorIds.StoragePoolNotFound, ErrorCategory.ObjectNotFound, target ?? e.PoolName),
            KvmPS.Management.Pools.StoragePoolAlreadyExistsException e => new(e, KvmErrorIds.StoragePoolExists, ErrorCategory.ResourceExists, target ?? e.PoolName),
            KvmPS.Management.Pools.StoragePoolInUseException e => new(e, KvmErrorIds.StoragePoolInUse, ErrorCategory.ResourceBusy, target ?? e.PoolName),
            KvmPS.Management.Pools.StoragePoolSettingException e => new(e, KvmErrorIds.InvalidStoragePoolSetting, ErrorCategory.InvalidArgument, e.Value),
            KvmPS.Management.Pools.StorageVolumeNotFoundException e => new(e, KvmErrorIds.StorageVolumeNotFound, ErrorCategory.ObjectNotFound, target ?? e.VolumeName),
            KvmPS.Management.Pools.StorageVolumeAlreadyExistsException e => new(e, KvmErrorIds.StorageVolumeExists, ErrorCategory.ResourceExists, target ?? e.VolumeName),
            KvmPS.Management.Pools.StorageVolumeInUseException e => new(e, KvmErrorIds.StorageVolumeInUse, ErrorCategory.ResourceBusy, target ?? e.VolumeName),
            KvmPS.Management.Pools.StorageVolumeSettingException e => new(e, KvmErrorIds.InvalidStorageVolumeSetting, ErrorCategory.InvalidArgument, e.VolumeName),
            KvmPS.Management.Pools.StoragePoolException e => new(e, KvmErrorIds.InvalidStoragePoolSetting, ErrorCategory.InvalidOperation, target ?? e.PoolName),
            KvmPS.Management.Networks.NetworkNotFoundException e => new(e, KvmErrorIds.NetworkNotFound, ErrorCategory.ObjectNotFound, target ?? e.NetworkName),
            KvmPS.Management.Networks.NetworkAlreadyExistsException e => new(e, KvmErrorIds.NetworkExists, ErrorCategory.ResourceExists, target ?? e.NetworkName),
            KvmPS.Management.Networks.NetworkInUseException e => new(e, KvmErrorIds.NetworkInUse, ErrorCategory.ResourceBusy, target ?? e.NetworkName),
            KvmPS.Management.Networks.NetworkSettingException e => new(e, KvmErrorIds.InvalidNetworkSetting, ErrorCategory.InvalidArgument, e.Value),
            KvmPS.Management.Networks.NetworkHostException e => new(e, KvmErrorIds.NetworkHostFailed, ErrorCategory.OperationStopped, target ?? e.NetworkName),
            KvmPS.Management.Networks.NetworkException e => new(e, KvmErrorIds.InvalidNetworkSetting, ErrorCategory.InvalidOperation, target ?? e.NetworkName),
            VmNotFoundException e => new(e, KvmErrorIds.VmNotFound, ErrorCategory.ObjectNotFound, target ?? e.VmName),
            VmAlreadyExistsException e => new(e, KvmErrorIds.VmAlreadyExists, ErrorCategory.ResourceExists, target ?? e.VmName),
            StoreLockTimeoutException e => new(e, KvmErrorIds.StoreLocked, ErrorCategory.ResourceBusy, target ?? e.LockPath),
            VmStoreCorruptException e => new(e, KvmErrorIds.StoreCorrupt, ErrorCategory.InvalidData, target ?? e.Path),
            StorePathEscapeException e => new(e, KvmErrorIds.InvalidVmSetting, ErrorCategory.InvalidArgument, target),
            PathNotAllowedException e => new(e, KvmErrorIds.InvalidVmSetting, ErrorCategory.PermissionDenied, e.Path),
            IsoImageException e => new(e, KvmErrorIds.InvalidIsoImage, ErrorCategory.InvalidData, e.Path),
            VmStoreException e => new(e, KvmErrorIds.StoreError, ErrorCategory.ResourceUnavailable, target),
            VmStateException e => new(e, KvmErrorIds.InvalidVmState, ErrorCategory.InvalidOperation, target ?? e.VmName),
            ManagementValidationException e => new(e, KvmErrorIds.InvalidVmSetting, ErrorCategory.InvalidArgument, target ?? e.VmName),
            VmFeatureNotSupportedException e => new(e, KvmErrorIds.VmFeatureNotSupported, ErrorCategory.NotImplemented, target ?? e.VmName),
            VmUpgradeException e => new(e, KvmErrorIds.VmmUpgradeFailed, ErrorCategory.OperationStopped, target ?? e.VmName),
            VmMoveException e => new(e, KvmErrorIds.VmMoveFailed, ErrorCategory.OperationStopped, target ?? e.VmName),
            VmmLaunchException e => new(e, KvmErrorIds.VmStartFailed, ErrorCategory.OperationStopped, target ?? e.VmName),
            SnapshotNotFoundException e => new(e, KvmErrorIds.SnapshotNotFound, ErrorCategory.ObjectNotFound, e.SnapshotName),
            SnapshotAlreadyExistsException e => new(e, KvmErrorIds.SnapshotAlreadyExists, ErrorCategory.ResourceExists, e.SnapshotName),
            SnapshotMetadataCorruptException e => new(e, KvmErrorIds.SnapshotCorrupt, ErrorCategory.InvalidData, e.Path),
            RawDiskSnapshotException e => new(e, KvmErrorIds.RawDiskNotCheckpointable, ErrorCategory.InvalidOperation, e.DiskPath),
            VmExportException e => new(e, KvmErrorIds.VmExportFailed, ErrorCategory.WriteError, e.Path),
            VmImportException e => new(e, KvmErrorIds.VmImportFailed, ErrorCategory.InvalidData, e.Path),
            VmManagementException e => new(e, KvmErrorIds.Unexpected, ErrorCategory.NotSpecified, target ?? e.VmName),
            VmmBinaryNotFoundException e => new(e, KvmErrorIds.VmmNotFound, ErrorCategory.NotInstalled, target),
            VmDefinitionException e => new(e, KvmErrorIds.InvalidVmDefinition, ErrorCategory.InvalidArgument, target ?? e.VmName),
            KvmPS.Management.Display.RfbException e => new(e, KvmErrorIds.VncFailed, ErrorCategory.ConnectionError, target ?? e.VmName),
            VmmTimeoutException e => new(e, KvmErrorIds.VmmNotResponding, ErrorCategory.OperationTimeout, target),
            VmmNotRunningException e => new(e, KvmErrorIds.VmNotRunning, ErrorCategory.InvalidOperation, target),
            VmmRequestException e => new(e, KvmErrorIds.VmmRequestFailed, ErrorCategory.InvalidOperation, target),
            VmmException e => new(e, KvmErrorIds.VmmNotResponding, ErrorCategory.ProtocolError, target),
            ImageInUseException e => new(e, KvmErrorIds.DiskImageInUse, ErrorCategory.ResourceBusy, target),
            DiskImageException e => new(e, KvmErrorIds.DiskImageFailed, ErrorCategory.WriteError, target),
            ValueFormatException e => new(e, KvmErrorIds.InvalidValue, ErrorCategory.InvalidArgument, target ?? e.Input),
            UnauthorizedAccessException e => new(e, KvmErrorIds.PermissionDenied, ErrorCategory.PermissionDenied, target),
            IOException e => new(e, KvmErrorIds.IOError, ErrorCategory.WriteError, target),
            ArgumentException e => new(e, KvmErrorIds.InvalidValue, ErrorCategory.InvalidArgument, target),
            _ => new(exception, KvmErrorIds.Unexpected, ErrorCategory.NotSpecified, target),
        };
    }

    /// <summary>The error for a plain name that matched no VM.</summary>
    public static KvmError VmNotFound(string name, string storeRoot) =>
        new(new VmNotFoundException(name, storeRoot), KvmErrorIds.VmNotFound, ErrorCategory.ObjectNotFound, name);
}
