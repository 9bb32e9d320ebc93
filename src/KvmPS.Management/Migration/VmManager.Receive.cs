using System.Globalization;
using System.Text;
using KvmPS.Interop;
using KvmPS.Management.Definitions;
using KvmPS.Management.Store;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Lifecycle;

/// <summary>How a receiving VMM listens (<see cref="VmManager.PrepareIncoming"/>).</summary>
/// <param name="TcpAddress">Direct TCP: the address of this host to listen on (the one the source reached it by); null: a Unix socket in the VM's folder (the source's ssh tunnel forwards to it).</param>
/// <param name="WithToken">Generate a one-time token the sender must present first (docs/migration.md, "The token").</param>
public sealed record IncomingListen(string? TcpAddress = null, bool WithToken = false);

/// <summary>A VM being received from another host: its definition is in this store, its VMM waits on <see cref="Uri"/>.</summary>
public sealed class IncomingVm
{
    internal IncomingVm(string name, string socketPath, string uri, string? token, VmmProcess process)
    {
        Name = name;
        SocketPath = socketPath;
        Uri = uri;
        Token = token;
        Process = process;
    }

    public string Name { get; }

    /// <summary>The Unix socket the receiving kvmps-vmm listens on (<c>--incoming unix:PATH</c>), or would have with a tunnel (it listens on TCP then).</summary>
    public string SocketPath { get; }

    /// <summary>Where it listens: <c>unix:PATH</c> or <c>tcp:ADDR:PORT</c>.</summary>
    public string Uri { get; }

    /// <summary>The one-time token the source sends first (null: none asked).</summary>
    public string? Token { get; }

    public int Pid => Process.Pid;

    internal VmmProcess Process { get; }
}

/// <summary>
/// The receiving end of a move between hosts (docs/migration.md, "Moving a VM to another host"; <c>kvmps vm receive</c>,
/// run by the source through ssh): the VM's definition goes into this store, a <c>kvmps-vmm --incoming unix:</c> waits
/// for its stream, and once the VM runs here vmm.pid names that VMM. Anything that fails removes both again.
/// </summary>
public sealed partial class VmManager
{
    /// <summary>The Unix socket in the VM's folder a VM moved from another host arrives on.</summary>
    public const string ReceiveSocketFileName = "incoming.sock";

    private const string ReceivedLine = "kvmps-vmm: received the VM from ";

    /// <summary>
    /// Checks that this host can take the VM (no VM of that name, every disk path present: shared storage, enough
    /// available memory), stores its definition, writes vmm.json and starts the receiving VMM; returns once it
    /// listens. A refusal changes nothing; a failure after the definition was stored removes it again.
    /// </summary>
    /// <param name="storageBytes">
    /// Moving with the disks (-IncludeStorage): the bytes the copied images may take here. Each disk's path (a bare file
    /// name: this store's disk folder of the VM) must not exist, and the file system must have that much available
    /// (statvfs); the receiving VMM then creates the images. Null: shared storage, every disk path must exist here.
    /// </param>
    public IncomingVm PrepareIncoming(VmDefinition definition, TimeSpan timeout, long? storageBytes = null, IncomingListen? listen = null)
    {
        listen ??= new IncomingListen();
        ArgumentNullException.ThrowIfNull(definition);
        definition.Validate();
        var name = definition.Name;
        if (Store.Exists(name))
            throw new VmMoveException(name, Environment.MachineName,
                $"this host already has a VM named '{name}' (state {Get(name).State}); remove or rename it there first");
        foreach (var disk in definition.Disks)
        {
            var path = Store.ResolveDiskPath(name, disk.Path);
            if (storageBytes is null && !File.Exists(path))
                throw new VmMoveException(name, Environment.MachineName,
                    $"VM '{name}': its disk '{disk.Path}' is not on this host at '{path}'; a VM with disks moves only between hosts that share its storage (the same paths on both), or with -IncludeStorage");
            if (storageBytes is not null && (File.Exists(path) || Directory.Exists(path)))
                throw new VmMoveException(name, Environment.MachineName,
                    $"VM '{name}': its disk '{disk.Path}' cannot be copied here: '{path}' already exists on this host; remove it there first (a copy never overwrites a file)");
        }
        if (storageBytes is { } needed && definition.Disks.Count > 0 && FileSystemSpace.Of(Store.Root) is var space && space.AvailableBytes < (ulong)needed)
            throw new VmMoveException(name, Environment.MachineName,
                $"VM '{name}': its disks ({string.Join(", ", definition.Disks.Select(d => d.Path))}) need up to {needed >> 20} MiB; the file system of '{Store.Root}' has {space.AvailableBytes >> 20} MiB available");
        var available = MemAvailableBytes();
        if (available is { } bytes && bytes < definition.Memory.StartupBytes)
            throw new VmMoveException(name, Environment.MachineName,
                $"VM '{name}' needs {definition.Memory.StartupBytes >> 20} MiB of memory; this host has {bytes >> 20} MiB available");
        VmmFeatureSupport.EnsureSupported(definition);

        Store.Create(definition);
        VmmProcess? process = null;
        var socketPath = Path.Combine(Store.VmDirectory(name), ReceiveSocketFileName);
        try
        {
            var configPath = Store.VmmConfigPath(name);
            DurableFile.WriteAtomically(configPath, VmmConfigBuilder.Build(definition, Store.SocketPath(name), Store.SerialLogPath(name), p => Store.ResolveDiskPath(name, p),
                n => Networks.NetworkRegistry.BridgeFor(Store.Root, n)));
            var token = listen.WithToken ? Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)).ToLowerInvariant() : null;
            // A free port can be taken by another process between the probe and the VMM's bind: try a few.
            for (var attempt = 1; ; attempt++)
            {
                var uri = listen.TcpAddress is { } address ? IncomingTcpUri(name, address) : "unix:" + socketPath;
                var tokenFile = token is null ? null : WriteTokenFile(name, token);
                process = Launcher.LaunchIncoming(Store, name, configPath, uri, tokenFile, memfd: !definition.MemoryBacking.KsmEnabled);
                var clock = System.Diagnostics.Stopwatch.StartNew();
                switch (WaitUntilIncomingListensAt(process, listen.TcpAddress is null ? socketPath : null, clock, timeout))
                {
                    case IncomingWait.Exited when listen.TcpAddress is not null && attempt < 3 && process.ReadLogTail().Contains("cannot listen", StringComparison.Ordinal):
                        continue;
                    case IncomingWait.Exited:
                        throw new VmMoveException(name, Environment.MachineName,
                            $"VM '{name}': the receiving kvmps-vmm ended before it listened on '{uri}' ({process.Exited.Result}){FormatTail(process.ReadLogTail())}");
                    case IncomingWait.TimedOut:
                        throw new VmMoveException(name, Environment.MachineName,
                            $"VM '{name}': the receiving kvmps-vmm did not listen on '{uri}' within {VmRuntimeProbe.Seconds(timeout)}");
                }
                return new IncomingVm(name, socketPath, uri, token, process);
            }
        }
        catch
        {
            RemoveIncoming(name, process, socketPath);
            throw;
        }
    }

    /// <summary>
    /// <c>tcp:ADDR:PORT</c> on <paramref name="address"/> with a port free now (the kernel picks one from its
    /// ephemeral range); an address this host does not have is refused, naming it.
    /// </summary>
    private static string IncomingTcpUri(string name, string address)
    {
        if (!System.Net.IPAddress.TryParse(address, out var ip))
            throw new VmMoveException(name, Environment.MachineName, $"the migration address '{address}' is not an IPv4 or IPv6 address");
        try
        {
            using var probe = new System.Net.Sockets.TcpListener(ip, 0);
            probe.Start();
            var port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
            return ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"tcp:[{ip}]:{port}" : $"tcp:{ip}:{port}";
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new VmMoveException(name, Environment.MachineName, $"cannot listen for the migration stream on '{address}' here: {e.SocketErrorCode} ({e.Message}); give an address of this host (--migration-address), or move through ssh (--tunnel)", e);
        }
    }

    /// <summary>The token for the VMM, in the VM's folder, born 0600 (the VMM deletes it once read).</summary>
    private string WriteTokenFile(string name, string token)
    {
        var path = Path.Combine(Store.VmDirectory(name), "incoming.token");
        TryDeleteFile(path);
        using (var file = new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite }))
            file.Write(Encoding.ASCII.GetBytes(token));
        return path;
    }

    /// <summary>Until the VMM logs that it waits (and, for a Unix socket, the socket exists).</summary>
    private static IncomingWait WaitUntilIncomingListensAt(VmmProcess incoming, string? unixPath, System.Diagnostics.Stopwatch clock, TimeSpan limit)
    {
        while ((unixPath is not null && !File.Exists(unixPath)) || !incoming.ReadLogTail().Contains("kvmps-vmm: waiting for a migration stream on ", StringComparison.Ordinal))
        {
            if (incoming.Exited.IsCompleted)
                return IncomingWait.Exited;
            if (clock.Elapsed > limit)
                return IncomingWait.TimedOut;
            Thread.Sleep(5);
        }
        return IncomingWait.Listening;
    }

    /// <summary>
    /// Waits until the receiving VMM runs the VM (its "received the VM" log line), writes vmm.pid and returns its pid.
    /// It ending first (the stream failed: status 16), <paramref name="abandoned"/> turning true (the source gave up or
    /// its ssh session ended) or <paramref name="timeout"/> passing removes the VM here and throws
    /// <see cref="VmMoveException"/> with the VMM's reason.
    /// </summary>
    public int CompleteIncoming(IncomingVm incoming, Func<bool> abandoned, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(incoming);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var name = incoming.Name;
        string? why = null;
        while (why is null)
        {
            if (incoming.Process.ReadLogTail(8000).Contains(ReceivedLine, StringComparison.Ordinal))
            {
                DurableFile.WriteAtomically(Store.PidPath(name), Encoding.ASCII.GetBytes(incoming.Pid.ToString(CultureInfo.InvariantCulture) + "\n"));
                return incoming.Pid;
            }
            if (incoming.Process.Exited.IsCompleted)
                why = $"the receiving kvmps-vmm ended ({incoming.Process.Exited.Result}){FormatTail(LastErrorLine(incoming.Process.ReadLogTail()))}";
            else if (abandoned())
                why = "the source gave up the move (or its ssh session ended)";
            else if (clock.Elapsed > timeout)
                why = $"the VM did not arrive within {VmRuntimeProbe.Seconds(timeout)}";
            else
                Thread.Sleep(5);
        }
        RemoveIncoming(name, incoming.Process, incoming.SocketPath);
        throw new VmMoveException(name, Environment.MachineName, $"VM '{name}' was not received: {why}; it was removed from this host");
    }

    /// <summary>Kills the receiving VMM (if any) and removes the VM's definition and folder: the half-made VM goes.</summary>
    public void AbandonIncoming(IncomingVm incoming)
    {
        ArgumentNullException.ThrowIfNull(incoming);
        RemoveIncoming(incoming.Name, incoming.Process, incoming.SocketPath);
    }

    private void RemoveIncoming(string name, VmmProcess? process, string socketPath)
    {
        if (process is not null && !process.Exited.IsCompleted)
        {
            ProcessInterop.Kill(process.Pid, ProcessInterop.SIGKILL);
            process.Exited.Wait(TimeSpan.FromSeconds(5));
        }
        TryDeleteFile(socketPath);
        TryDeleteFile(Path.Combine(Path.GetDirectoryName(socketPath)!, "incoming.token"));
        try
        {
            if (Store.Exists(name))
                Store.Delete(name, DiskRetention.Delete);
        }
        catch (VmStoreException)
        {
        }
    }

    private static string LastErrorLine(string tail) =>
        tail.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault(l => l.Contains("error", StringComparison.Ordinal)) ?? tail;

    private static long? MemAvailableBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)
                    && long.TryParse(line["MemAvailable:".Length..].Trim().Split(' ')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var kib))
                    return kib * 1024;
        }
        catch (IOException)
        {
        }
        return null;
    }
}
