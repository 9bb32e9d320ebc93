using System.Management.Automation;
using KvmPS.Management.Definitions;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;
using KvmPS.Storage;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// An error a cmdlet reports: the stable error id (PowerShell appends the cmdlet class, giving e.g.
/// <c>VmNotFound,KvmPS.Commands.GetKvmVmCommand</c>), its category and the offending object.
/// </summary>
internal sealed record KvmError(Exception Exception, string ErrorId, ErrorCategory Category, object? Target)
{
    public ErrorRecord ToErrorRecord() => new(Exception, ErrorId, Category, Target);
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
    public const string DeviceNotFound = "DeviceNotFound";
    public const string DiskImageNotFound = "DiskImageNotFound";
    public const string DeviceAlreadyAttached = "DeviceAlreadyAttached";
    public const string PciDeviceUnusable = "PciDeviceUnusable";
    public const string HostDeviceNotFound = "HostDeviceNotFound";
    public const string AmbiguousVm = "AmbiguousVm";
    public const string ConsoleUnavailable = "ConsoleUnavailable";
    public const string PermissionDenied = "PermissionDenied";
    public const string IOError = "IOError";
    public const string Unexpected = "UnexpectedError";
}

/// <summary>Maps management and storage exceptions to <see cref="KvmError"/>s.</summary>
internal static class KvmErrorMapping
{
    public static KvmError FromException(Exception exception, object? target)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return exception switch
        {
            VmNotFoundException e => new(e, KvmErrorIds.VmNotFound, ErrorCategory.ObjectNotFound, target ?? e.VmName),
            VmAlreadyExistsException e => new(e, KvmErrorIds.VmAlreadyExists, ErrorCategory.ResourceExists, target ?? e.VmName),
            StoreLockTimeoutException e => new(e, KvmErrorIds.StoreLocked, ErrorCategory.ResourceBusy, target ?? e.LockPath),
            VmStoreCorruptException e => new(e, KvmErrorIds.StoreCorrupt, ErrorCategory.InvalidData, target ?? e.Path),
            StorePathEscapeException e => new(e, KvmErrorIds.InvalidVmSetting, ErrorCategory.InvalidArgument, target),
            VmStoreException e => new(e, KvmErrorIds.StoreError, ErrorCategory.ResourceUnavailable, target),
            VmStateException e => new(e, KvmErrorIds.InvalidVmState, ErrorCategory.InvalidOperation, target ?? e.VmName),
            ManagementValidationException e => new(e, KvmErrorIds.InvalidVmSetting, ErrorCategory.InvalidArgument, target ?? e.VmName),
            VmFeatureNotSupportedException e => new(e, KvmErrorIds.VmFeatureNotSupported, ErrorCategory.NotImplemented, target ?? e.VmName),
            VmmLaunchException e => new(e, KvmErrorIds.VmStartFailed, ErrorCategory.OperationStopped, target ?? e.VmName),
            VmManagementException e => new(e, KvmErrorIds.Unexpected, ErrorCategory.NotSpecified, target ?? e.VmName),
            VmmBinaryNotFoundException e => new(e, KvmErrorIds.VmmNotFound, ErrorCategory.NotInstalled, target),
            VmDefinitionException e => new(e, KvmErrorIds.InvalidVmDefinition, ErrorCategory.InvalidArgument, target ?? e.VmName),
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
