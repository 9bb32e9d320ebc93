using System.Reflection;
using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.SerialConsole;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Cli;

/// <summary>A command-line mistake: printed with a pointer to --help, exit status 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The kvmps command line. Streams and the manager are injected so tests run it in-process; <see cref="Program"/>
/// wires it to the console and the store at <c>$KVMPS_HOME</c> (or the default location, see VmStoreLocation).
/// </summary>
public sealed partial class CliApp
{
    private readonly Func<VmManager> _managerFactory;
    private VmManager? _manager;

    public CliApp(TextReader input, TextWriter output, TextWriter error, Func<VmManager>? managerFactory = null)
    {
        In = input;
        Out = output;
        Err = error;
        _managerFactory = managerFactory ?? (() => VmManager.OpenDefault());
    }

    internal TextReader In { get; }
    internal TextWriter Out { get; }
    internal TextWriter Err { get; }
    internal VmManager Manager => _manager ??= _managerFactory();

    /// <summary>The environment (KVMPS_HOST, KVMPS_SSH...); tests replace it.</summary>
    internal Func<string, string?> GetEnvironment { get; init; } = Environment.GetEnvironmentVariable;

    /// <summary>The host's PCI functions, from the sysfs tree KVMPS_SYSFS_ROOT names (tests' fake one) or /sys.</summary>
    internal KvmPS.Management.HostDevices.PciHostDevices PciDevices() => HostSriovOutput.PciDevices(GetEnvironment);

    private Reconciler NewReconciler() => new(Manager, sriov: new KvmPS.Management.HostDevices.HostSriov(PciDevices(), KvmPS.Management.HostDevices.SysfsWriter.Instance));

    public static string Version =>
        typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    public int Run(string[] args)
    {
        try
        {
            return RemoteHostCommand.TryRun(this, args) ?? RemoteManifestCommand.TryRun(this, args) ?? Dispatch(new ArgReader(args));
        }
        catch (UsageException e)
        {
            Err.WriteLine($"kvmps: {e.Message}");
            Err.WriteLine("Run 'kvmps --help' for usage.");
            return ExitCodes.Usage;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            var code = ExitCodeFor(e);
            Err.WriteLine($"kvmps: {e.Message}");
            return code;
        }
        finally
        {
            Out.Flush();
            Err.Flush();
        }
    }

    internal static int ExitCodeFor(Exception e) => e switch
    {
        DesiredStateException or DscInputException => ExitCodes.ManifestError,
        VmNotFoundException => ExitCodes.VmNotFound,
        KvmPS.Management.Snapshots.SnapshotMetadataCorruptException => ExitCodes.Environment,
        VmAlreadyExistsException => ExitCodes.OperationFailed, // a name conflict, not a broken store
        IsoImageException => ExitCodes.OperationFailed, // a wrong ISO is the caller's input, not a broken store
        VmmBinaryNotFoundException or StoreLockTimeoutException or VmStoreException or UnauthorizedAccessException => ExitCodes.Environment,
        _ => ExitCodes.OperationFailed,
    };

    internal int Dispatch(ArgReader args)
    {
        var verb = args.Next();
        switch (verb)
        {
            case null:
                Out.Write(HelpText.Main);
                return ExitCodes.Usage;
            case "-h" or "--help" or "help":
                var topic = args.Next();
                Out.Write(topic is null ? HelpText.Main : HelpText.For(topic) ?? throw new UsageException($"no help for '{topic}'"));
                return ExitCodes.Ok;
            case "--version" or "version":
                Out.WriteLine($"kvmps {Version}");
                return ExitCodes.Ok;
            case "apply": return Apply(args);
            case "plan": return Plan(args);
            case "test": return Test(args);
            case "get": return Get(args);
            case "export": return new ExportCommand(this).Run(args);
            case "vm": return Vm(args);
            case "dsc": return new DscCommand(this).Run(args);
            case "autostart": return Autostart(args);
            case "pool": return new PoolCommands(this).Pool(args);
            case "vol": return new PoolCommands(this).Vol(args);
            case "net": return new NetCommands(this).Net(args);
            case "host": return new HostCommands(this).Host(args);
            case "disk": return new DiskCommands(this).Disk(args);
            default:
                throw new UsageException($"unknown command '{verb}'");
        }
    }

    internal sealed class HelpRequested(string topic) : Exception(topic);
}
