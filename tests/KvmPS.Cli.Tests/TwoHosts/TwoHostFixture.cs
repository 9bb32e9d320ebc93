using System.Diagnostics;
using System.Text;

namespace KvmPS.Cli.Tests.TwoHosts;

/// <summary>One of the two test hosts: a network namespace with an address, an sshd and a KvmPS store.</summary>
public sealed record TestHost(string Name, string Namespace, string Address, string StoreHome, string BinDirectory);

/// <summary>
/// Two "hosts" on this machine for the remote-host tests (issue 12): two network namespaces joined by a veth pair
/// (10.231.0.1 and 10.231.0.2), each running a real OpenSSH sshd started here with its own config and host key,
/// accepting one client key (root, key-based only). Each host has its own store (KVMPS_HOME, set by sshd's SetEnv
/// for the sessions it starts) and a <c>kvmps</c> on its PATH that runs the CLI built with these tests. Everything
/// (keys, configs, stores) lives in a temp directory made per run. Dispose kills the sshds and deletes the
/// namespaces (which takes the veth pair with them) and the directory, also after a failed set-up.
/// </summary>
public sealed class TwoHostFixture : IDisposable
{
    private const string Subnet = "10.231.0";
    private readonly List<Process> _sshds = [];
    private readonly List<string> _namespaces = [];

    public TwoHostFixture()
    {
        var id = Convert.ToHexString(Guid.NewGuid().ToByteArray()[..3]).ToLowerInvariant();
        Directory = Path.Combine("/tmp", "kv2h-" + id);
        // Where it cannot run, its tests are skipped (TwoHostFact) and nothing is set up.
        if (SkipReason is not null)
            return;
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            Host1 = NewHost("h1", $"kv2h-{id}-1", $"{Subnet}.1");
            Host2 = NewHost("h2", $"kv2h-{id}-2", $"{Subnet}.2");
            // veth names are limited to 15 characters.
            Ip("link", "add", $"kv{id}a", "type", "veth", "peer", "name", $"kv{id}b");
            ConfigureEnd(Host1, $"kv{id}a");
            ConfigureEnd(Host2, $"kv{id}b");

            ClientKeyPath = NewKey("client_key");
            OtherKeyPath = NewKey("other_key");
            var knownHosts = new StringBuilder();
            foreach (var host in new[] { Host1, Host2 })
            {
                var hostKey = NewKey($"{host.Name}_host_key");
                knownHosts.Append(host.Address).Append(' ').AppendLine(File.ReadAllText(hostKey + ".pub").Trim());
                StartSshd(host, hostKey);
            }
            File.WriteAllText(Path.Combine(Directory, "known_hosts"), knownHosts.ToString());
            // The clients' ssh_config: only these hosts' keys are known, and they must match.
            SshConfigPath = Path.Combine(Directory, "ssh_config");
            File.WriteAllText(SshConfigPath, $"""
                Host *
                  UserKnownHostsFile {Path.Combine(Directory, "known_hosts")}
                  GlobalKnownHostsFile /dev/null
                  StrictHostKeyChecking yes

                """);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Why the fixture cannot run here (not root, no <c>ip</c>, no sshd/ssh), or null when it can.</summary>
    public static string? SkipReason { get; } = FindSkipReason();

    public string Directory { get; }
    public TestHost Host1 { get; } = null!;
    public TestHost Host2 { get; } = null!;

    /// <summary>The key both hosts' authorized_keys accept.</summary>
    public string ClientKeyPath { get; } = null!;

    /// <summary>A valid key neither host accepts.</summary>
    public string OtherKeyPath { get; } = null!;

    /// <summary>ssh_config for clients (<c>-F</c>, or KVMPS_SSH_CONFIG): known_hosts with both hosts' keys.</summary>
    public string SshConfigPath { get; } = null!;

    /// <summary>
    /// The kvmps-vmm both hosts run (KVMPS_VMM for their sessions and for <see cref="Kvmps"/>): $KVMPS_VMM, else the
    /// repository's out/bin/kvmps-vmm; null when neither exists (tests that run VMs then skip).
    /// </summary>
    public static string? VmmPath { get; } = FindVmm();

    private static string? FindVmm([System.Runtime.CompilerServices.CallerFilePath] string sourceFile = "")
    {
        if (Environment.GetEnvironmentVariable("KVMPS_VMM") is { Length: > 0 } fromEnvironment)
            return File.Exists(fromEnvironment) ? Path.GetFullPath(fromEnvironment) : null;
        for (var dir = new DirectoryInfo(Path.GetDirectoryName(sourceFile)!); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "KvmPS.sln")))
                return File.Exists(Path.Combine(dir.FullName, "out", "bin", "kvmps-vmm")) ? Path.Combine(dir.FullName, "out", "bin", "kvmps-vmm") : null;
        return null;
    }

    /// <summary>The built kvmps (next to these tests), as each host's PATH runs it.</summary>
    public static string KvmpsDll => Path.Combine(AppContext.BaseDirectory, "kvmps.dll");

    /// <summary>
    /// A script that runs ssh inside <paramref name="from"/>'s namespace, for a transport in this (the root)
    /// namespace: <c>SshTransportOptions.SshProgram</c>.
    /// </summary>
    public string SshFrom(TestHost from)
    {
        var path = Path.Combine(Directory, $"ssh-from-{from.Name}");
        if (!File.Exists(path))
        {
            File.WriteAllText(path, $"#!/bin/sh\nexec ip netns exec {from.Namespace} ssh \"$@\"\n");
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
        return path;
    }

    /// <summary>
    /// Runs the built <c>kvmps ARGS</c> as a process on <paramref name="host"/>: inside its namespace, with its
    /// store and the clients' ssh_config; <paramref name="environment"/> adds or overrides variables.
    /// </summary>
    public (int Code, string Out, string Err) Kvmps(TestHost host, IReadOnlyDictionary<string, string>? environment, params string[] args) =>
        KvmpsWithin(TimeSpan.FromSeconds(90), host, environment, args);

    /// <summary><see cref="Kvmps"/> with its own time limit (a move takes longer than a query).</summary>
    public (int Code, string Out, string Err) KvmpsWithin(TimeSpan timeout, TestHost host, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var start = new ProcessStartInfo("sh") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { InNetns.Script, host.Namespace, "dotnet", KvmpsDll }.Concat(args))
            start.ArgumentList.Add(a);
        start.Environment["KVMPS_HOME"] = host.StoreHome;
        start.Environment["KVMPS_SSH_CONFIG"] = SshConfigPath;
        start.Environment.Remove("KVMPS_HOST");
        start.Environment.Remove("KVMPS_SSH_KEY");
        start.Environment["KVMPS_ALLOWED_PATHS"] = "/";
        if (VmmPath is { } vmm)
            start.Environment["KVMPS_VMM"] = vmm;
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
            start.Environment[key] = value;
        return Run(start, timeout);
    }

    private TestHost NewHost(string name, string netns, string address)
    {
        Ip("netns", "add", netns);
        _namespaces.Add(netns);
        var home = Path.Combine(Directory, name, "store");
        var bin = Path.Combine(Directory, name, "bin");
        System.IO.Directory.CreateDirectory(home);
        System.IO.Directory.CreateDirectory(bin);
        var kvmps = Path.Combine(bin, "kvmps");
        var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        File.WriteAllText(kvmps, $"#!/bin/sh\nexec {dotnet} {KvmpsDll} \"$@\"\n");
        File.SetUnixFileMode(kvmps, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return new TestHost(name, netns, address, home, bin);
    }

    private static void ConfigureEnd(TestHost host, string veth)
    {
        Ip("link", "set", veth, "netns", host.Namespace);
        Ip("-n", host.Namespace, "addr", "add", host.Address + "/24", "dev", veth);
        Ip("-n", host.Namespace, "link", "set", veth, "up");
        Ip("-n", host.Namespace, "link", "set", "lo", "up");
    }

    private string NewKey(string name)
    {
        var path = Path.Combine(Directory, name);
        var start = new ProcessStartInfo("ssh-keygen") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path })
            start.ArgumentList.Add(a);
        var (code, _, error) = Run(start, TimeSpan.FromSeconds(30));
        if (code != 0)
            throw new InvalidOperationException($"ssh-keygen for {name} failed ({code}): {error}");
        return path;
    }

    private void StartSshd(TestHost host, string hostKey)
    {
        var hostDir = Path.GetDirectoryName(host.StoreHome)!;
        var authorizedKeys = Path.Combine(hostDir, "authorized_keys");
        File.WriteAllText(authorizedKeys, File.ReadAllText(ClientKeyPath + ".pub"));
        var config = Path.Combine(hostDir, "sshd_config");
        // Key-based root login only; StrictModes off because the files live under /tmp (mode 1777).
        // SetEnv gives every session this host's store and kvmps (sshd otherwise resets the environment), and the
        // clients' ssh_config and key, so a session can reach the other host in turn (a move whose source is remote).
        File.WriteAllText(config, $"""
            ListenAddress {host.Address}:22
            HostKey {hostKey}
            AuthorizedKeysFile {authorizedKeys}
            PidFile {Path.Combine(hostDir, "sshd.pid")}
            StrictModes no
            UsePAM no
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            SetEnv KVMPS_HOME={host.StoreHome} PATH={host.BinDirectory}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DOTNET_NOLOGO=1 KVMPS_ALLOWED_PATHS=/ KVMPS_SSH_CONFIG={Path.Combine(Directory, "ssh_config")} KVMPS_SSH_KEY={ClientKeyPath}{(VmmPath is { } vmm ? " KVMPS_VMM=" + vmm : "")}

            """);
        // sshd's privilege-separation directory; normally made by its service unit.
        System.IO.Directory.CreateDirectory("/run/sshd");
        var start = new ProcessStartInfo("sh") { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        foreach (var a in new[] { InNetns.Script, host.Namespace, SshdPath!, "-D", "-e", "-f", config })
            start.ArgumentList.Add(a);
        var log = new StringBuilder();
        var listening = new ManualResetEventSlim();
        var sshd = new Process { StartInfo = start };
        sshd.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
                return;
            lock (log)
                log.AppendLine(e.Data);
            if (e.Data.Contains("Server listening", StringComparison.Ordinal))
                listening.Set();
        };
        sshd.Start();
        _sshds.Add(sshd);
        sshd.BeginErrorReadLine();
        if (!listening.Wait(TimeSpan.FromSeconds(15)))
            lock (log)
                throw new InvalidOperationException($"sshd for {host.Name} ({host.Address} in {host.Namespace}) did not start listening: {log}");
    }

    private static void Ip(params string[] args)
    {
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in args)
            start.ArgumentList.Add(a);
        var (code, _, error) = Run(start, TimeSpan.FromSeconds(30));
        if (code != 0)
            throw new InvalidOperationException($"ip {string.Join(' ', args)} failed ({code}): {error}");
    }

    internal static (int Code, string Out, string Err) Run(ProcessStartInfo start, TimeSpan timeout)
    {
        start.UseShellExecute = false;
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{start.FileName} {string.Join(' ', start.ArgumentList)} did not finish in {timeout.TotalSeconds} s");
        }
        process.WaitForExit();
        return (process.ExitCode, output.Result, error.Result);
    }

    public void Dispose()
    {
        foreach (var sshd in _sshds)
        {
            try
            {
                // in-netns.sh and ip netns exec exec sshd, so the process is sshd itself; -D keeps it in the foreground.
                if (!sshd.HasExited)
                    sshd.Kill(entireProcessTree: true);
                sshd.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
            }
            sshd.Dispose();
        }
        _sshds.Clear();
        // Deleting a namespace destroys the veth end in it, and with it the peer.
        foreach (var netns in _namespaces)
        {
            try
            {
                Ip("netns", "del", netns);
            }
            catch (InvalidOperationException)
            {
            }
        }
        _namespaces.Clear();
        try
        {
            if (System.IO.Directory.Exists(Directory))
                System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static string? SshdPath => new[] { "/usr/sbin/sshd", "/usr/local/sbin/sshd" }.FirstOrDefault(File.Exists);

    private static string? FindSkipReason()
    {
        if (!OperatingSystem.IsLinux())
            return "the two-host tests need Linux network namespaces";
        if (Environment.UserName != "root" && Interop.GetEuid() != 0)
            return "the two-host tests need root (network namespaces, sshd)";
        if (!OnPath("ip"))
            return "the two-host tests need iproute2's 'ip' (./build.sh setup)";
        if (SshdPath is null)
            return "the two-host tests need OpenSSH's sshd (openssh-server; ./build.sh setup)";
        if (!OnPath("ssh") || !OnPath("ssh-keygen"))
            return "the two-host tests need OpenSSH's ssh and ssh-keygen (openssh-client)";
        if (!File.Exists(KvmpsDll))
            return $"the built kvmps is missing at {KvmpsDll}";
        return null;
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").Split(':')
            .Append("/usr/sbin").Append("/sbin")
            .Any(dir => dir.Length > 0 && File.Exists(Path.Combine(dir, program)));

    private static class Interop
    {
        [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "geteuid")]
        public static extern uint GetEuid();
    }
}

/// <summary>A fact that needs <see cref="TwoHostFixture"/>; skipped, with the reason, where it cannot run.</summary>
public sealed class TwoHostFactAttribute : FactAttribute
{
    public TwoHostFactAttribute()
    {
        if (TwoHostFixture.SkipReason is { } why)
            Skip = why;
    }
}

[CollectionDefinition(Name)]
public sealed class TwoHostCollection : ICollectionFixture<TwoHostFixture>
{
    public const string Name = "Two hosts over SSH";
}
