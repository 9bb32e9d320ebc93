using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace KvmPS.Engine.Tests.Support;

/// <summary>
/// Locates the published kvmps-vmm: <c>$KVMPS_VMM</c>, else <c>out/bin/kvmps-vmm</c> in the repository, which is found
/// from the test assembly's directory or, when the build lives elsewhere (<c>--artifacts-path</c>), from this source file.
/// </summary>
internal static class VmmBinary
{
    public static string RepoRoot { get; } = FindRepoRoot();

    private static string FindRepoRoot([CallerFilePath] string sourceFile = "")
    {
        foreach (string? start in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(sourceFile) })
            for (var dir = string.IsNullOrEmpty(start) ? null : new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "KvmPS.sln"))) return dir.FullName;
        throw new InvalidOperationException($"cannot find the repository root (KvmPS.sln) above {AppContext.BaseDirectory} or {sourceFile}");
    }

    /// <summary>The binary, or null when it has not been published; a KVMPS_VMM naming a missing file is an error.</summary>
    public static string? TryFind()
    {
        if (Environment.GetEnvironmentVariable("KVMPS_VMM") is { Length: > 0 } env)
            return File.Exists(env) ? env : throw new FileNotFoundException($"KVMPS_VMM names {env}, which does not exist.");
        string p = Path.Combine(RepoRoot, "out", "bin", "kvmps-vmm");
        return File.Exists(p) ? p : null;
    }

    public static string Executable => TryFind()
        ?? throw new InvalidOperationException($"{Path.Combine(RepoRoot, "out", "bin", "kvmps-vmm")} does not exist: publish it first (./build.sh build, or dotnet publish src/kvmps-vmm -c Release -o out/bin)");
}

/// <summary>A kvmps-vmm child process with captured stdout/stderr.</summary>
internal sealed class VmmProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new(), _stderr = new();

    public VmmProcess(params string[] args) : this(args, redirectStdin: false) { }

    /// <param name="netns">run kvmps-vmm inside this network namespace (<c>ip netns exec</c>, which execs it: same pid)</param>
    /// <param name="unjailed">a test that needs its VMM unjailed whatever <see cref="JailedAs"/> says (it asserts
    /// unjailed behaviour) says so here; one that passes its own <c>--jail</c> or <c>--user</c> gets exactly those</param>
    public VmmProcess(string[] args, bool redirectStdin, IReadOnlyDictionary<string, string>? environment = null, string? netns = null, bool unjailed = false)
    {
        var psi = new ProcessStartInfo(netns is null ? VmmBinary.Executable : "ip") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = redirectStdin };
        if (netns is not null) foreach (var a in (string[])["netns", "exec", netns, VmmBinary.Executable]) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        // Every test's VMM runs jailed as CI's would (docs/confinement.md, "The jail"), unless the test chose otherwise.
        foreach (var a in TestJail.Options(args, unjailed)) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        _process = new Process { StartInfo = psi };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_stdout) _stdout.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The user (<c>UID:GID</c>) every test VMM is jailed as, or null: not jailed unless a test asks. See <see cref="TestJail"/>.</summary>
    public static string? JailedAs => TestJail.User;

    public int Pid => _process.Id;
    public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }
    public StreamWriter Stdin => _process.StandardInput;
    public bool HasExited => _process.HasExited;

    public int WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout)) throw new TimeoutException($"kvmps-vmm did not exit within {timeout}.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        _process.WaitForExit();
        return _process.ExitCode;
    }

    public static (int Code, string Stdout, string Stderr) Run(TimeSpan timeout, params string[] args)
    {
        using var p = new VmmProcess(args);
        int code = p.WaitForExit(timeout);
        return (code, p.Stdout, p.Stderr);
    }

    public bool WaitForStdout(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (Stdout.Contains(text)) return true;
            if (_process.HasExited) return Stdout.Contains(text);
            Thread.Sleep(10);
        }
        return false;
    }

    /// <summary>Stderr is read asynchronously: a line the VMM wrote before its console output may arrive after it.</summary>
    public bool WaitForStderr(string pattern, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (System.Text.RegularExpressions.Regex.IsMatch(Stderr, pattern)) return true;
            if (_process.HasExited) break;
            Thread.Sleep(10);
        }
        _process.WaitForExit(100);
        return System.Text.RegularExpressions.Regex.IsMatch(Stderr, pattern);
    }

    public void Signal(int signal) => Process.Start("kill", $"-{signal} {Pid}")!.WaitForExit();

    public void Dispose()
    {
        try { if (!_process.HasExited) { _process.Kill(); _process.WaitForExit(5000); } } catch { }
        _process.Dispose();
    }
}

/// <summary>A minimal client of the control protocol (docs/vmm.md) for tests.</summary>
internal sealed class ControlClient : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly StreamReader _reader;

    public ControlClient(string path, TimeSpan? waitForSocket = null)
    {
        var deadline = DateTime.UtcNow + (waitForSocket ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            _socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try { _socket.Connect(new UnixDomainSocketEndPoint(path)); break; }
            catch (SocketException) when (DateTime.UtcNow < deadline) { _socket.Dispose(); Thread.Sleep(20); }
        }
        // Longer than any timeout_ms a test gives the VMM (vcpu.set waits up to 60 s for the guest): the VMM answers then.
        _stream = new NetworkStream(_socket, ownsSocket: true) { ReadTimeout = 90000 };
        _reader = new StreamReader(_stream, Encoding.UTF8, false, 1, leaveOpen: true);
    }

    public Stream Stream => _stream;

    public string SendRaw(string line)
    {
        _stream.Write(Encoding.UTF8.GetBytes(line + "\n"));
        return _reader.ReadLine() ?? throw new IOException("the VMM closed the connection");
    }

    /// <summary>A request line with open files attached (SCM_RIGHTS, docs/vmm.md "Passing open files"); the reply.</summary>
    public JsonElement RequestWithFiles(string request, string extra, IReadOnlyList<System.Runtime.InteropServices.SafeHandle> files)
    {
        byte[] line = Encoding.UTF8.GetBytes($"{{\"id\": 42, \"request\": \"{request}\"{(extra.Length > 0 ? ", " + extra : "")}}}\n");
        int sent = KvmPS.Interop.UnixFdPassing.Send(_socket, line, files);
        if (sent < line.Length) _stream.Write(line, sent, line.Length - sent);
        using var doc = JsonDocument.Parse(_reader.ReadLine() ?? throw new IOException("the VMM closed the connection"));
        return doc.RootElement.Clone();
    }

    /// <summary>The next line the VMM sends on its own (e.g. the refusal of a connection over the limit).</summary>
    public string? ReadLine() => _reader.ReadLine();

    public JsonElement Request(string request, string extra = "")
    {
        string reply = SendRaw($"{{\"id\": 42, \"request\": \"{request}\"{(extra.Length > 0 ? ", " + extra : "")}}}");
        using var doc = JsonDocument.Parse(reply);
        return doc.RootElement.Clone();
    }

    /// <summary>The result of a request that must succeed.</summary>
    public JsonElement Ok(string request, string extra = "")
    {
        var reply = Request(request, extra);
        if (!reply.GetProperty("ok").GetBoolean()) throw new InvalidOperationException($"{request} failed: {reply}");
        return reply.GetProperty("result");
    }

    /// <summary>Polls status until the VM reaches <paramref name="state"/>.</summary>
    public JsonElement WaitForState(string state, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        JsonElement status;
        while ((status = Ok("status")).GetProperty("state").GetString() != state && DateTime.UtcNow < deadline) Thread.Sleep(10);
        return status;
    }

    /// <summary>Bytes already buffered by the line reader, then the stream.</summary>
    public string ReadConsoleUntil(string text, TimeSpan timeout)
    {
        var sb = new StringBuilder();
        var deadline = DateTime.UtcNow + timeout;
        var buffer = new char[256];
        _stream.ReadTimeout = 200;
        while (DateTime.UtcNow < deadline && !sb.ToString().Contains(text))
        {
            try { int n = _reader.Read(buffer, 0, buffer.Length); if (n <= 0) break; sb.Append(buffer, 0, n); }
            catch (IOException) { }
        }
        return sb.ToString();
    }

    public void Dispose() { _reader.Dispose(); _stream.Dispose(); }
}

/// <summary>A short temp directory (Unix socket paths are limited to 107 bytes).</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("kvt").FullName;

    /// <summary>When test VMMs are jailed the folder is the jail user's, as management gives a jailed VMM its VM folder.</summary>
    public TempDir() => TestJail.GiveToJailUser(Path);

    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch { } }
}
