using System.Collections.ObjectModel;
using System.Globalization;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Management.Automation.Runspaces;
using System.Reflection;
using System.Security;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Store;

// Sessions share the process environment (KVMPS_HOME) and the current directory: one test at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace KvmPS.PowerShell.Tests;

internal static class Repo
{
    public static string Root { get; } = typeof(Repo).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepoRoot").Value!;

    public static string Docs => Path.Combine(Root, "docs", "en-US");
    public static string Manifest => Path.Combine(Root, "KvmPS.psd1");
    public static Assembly Module => typeof(KvmVm).Assembly;

    /// <summary>The module as built next to the tests: KvmPS.psd1, KvmPS.dll, the format file and the help.</summary>
    public static string BuiltManifest => Path.Combine(AppContext.BaseDirectory, "KvmPS.psd1");
}

/// <summary>A store in a temp folder, removed on dispose.</summary>
internal sealed class TempStore : IDisposable
{
    public TempStore()
    {
        // Short path: the control socket path must fit in 107 bytes.
        Root = Path.Combine(Path.GetTempPath(), "kps-" + Guid.NewGuid().ToString("N")[..8]);
        Store = VmStore.Open(Root);
        Manager = new VmManager(Store, diskImageCreator: new StorageDiskImageCreator());
    }

    public string Root { get; }
    public VmStore Store { get; }
    public VmManager Manager { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>What one script wrote to each stream, and what the host printed (-WhatIf lines, prompts).</summary>
internal sealed record PwshResult(
    IReadOnlyList<PSObject> Output,
    IReadOnlyList<ErrorRecord> Errors,
    IReadOnlyList<string> Warnings,
    IReadOnlyList<string> Verbose,
    IReadOnlyList<string> HostLines)
{
    public IEnumerable<T> Objects<T>() => Output.Select(o => o.BaseObject).OfType<T>();

    public ErrorRecord SingleError => Assert.Single(Errors);
}

/// <summary>
/// A PowerShell runspace with the built module imported and $KVMPS_HOME set to a temp store: cmdlets run exactly
/// as in pwsh (parameter binding, pipeline, ShouldProcess, formatting). The host records what it is asked to
/// print and answers confirmation prompts from <see cref="RecordingHost.Answers"/>; with no answer queued it
/// fails the prompt as pwsh -NonInteractive does.
/// </summary>
internal sealed class PwshSession : IDisposable
{
    private readonly Runspace _runspace;

    public PwshSession(bool withHost = true)
    {
        Store = new TempStore();
        Environment.SetEnvironmentVariable("KVMPS_HOME", Store.Root);
        var state = InitialSessionState.CreateDefault2();
        state.ImportPSModule(Repo.BuiltManifest);
        Host = new RecordingHost();
        _runspace = withHost ? RunspaceFactory.CreateRunspace(Host, state) : RunspaceFactory.CreateRunspace(state);
        _runspace.Open();
        Run("Set-Location -LiteralPath $args[0]", Store.Root);
    }

    public TempStore Store { get; }
    public RecordingHost Host { get; }
    public VmManager Manager => Store.Manager;

    /// <summary>Runs <paramref name="script"/>; its arguments are $args[0], $args[1], ….</summary>
    public PwshResult Run(string script, params object?[] arguments)
    {
        using var shell = System.Management.Automation.PowerShell.Create();
        shell.Runspace = _runspace;
        shell.AddScript(script);
        foreach (var argument in arguments)
            shell.AddArgument(argument);
        var linesBefore = Host.Lines.Count;
        Collection<PSObject> output;
        try
        {
            output = shell.Invoke();
        }
        catch (RuntimeException e)
        {
            // A terminating error: report it like a non-terminating one so tests can check its record.
            return new PwshResult(Array.Empty<PSObject>(), shell.Streams.Error.Append(e.ErrorRecord).ToList(),
                shell.Streams.Warning.Select(w => w.Message).ToList(), shell.Streams.Verbose.Select(v => v.Message).ToList(),
                Host.Lines.Skip(linesBefore).ToList());
        }
        return new PwshResult(output.Where(o => o is not null).ToList(), shell.Streams.Error.ToList(),
            shell.Streams.Warning.Select(w => w.Message).ToList(), shell.Streams.Verbose.Select(v => v.Message).ToList(),
            Host.Lines.Skip(linesBefore).ToList());
    }

    /// <summary>Runs <paramref name="script"/> and returns its output rendered as pwsh prints it at <paramref name="width"/> columns.</summary>
    public string Render(string script, int width = 80, params object?[] arguments)
    {
        var result = Run($"& {{ {script} }} @args | Out-String -Width {width}", arguments);
        Assert.Empty(result.Errors);
        return string.Concat(result.Output.Select(o => o.BaseObject as string));
    }

    public void Dispose()
    {
        try
        {
            Run("Get-KvmVm | Where-Object IsActive | Stop-KvmVm -TurnOff -Confirm:$false");
        }
        finally
        {
            _runspace.Dispose();
            Store.Dispose();
        }
    }
}

/// <summary>A host that records output lines and answers prompts from a queue.</summary>
internal sealed class RecordingHost : PSHost
{
    private readonly RecordingUI _ui;

    public RecordingHost() => _ui = new RecordingUI(this);

    public List<string> Lines { get; } = new();

    /// <summary>Choice indexes to answer confirmation prompts with (0 = Yes, 2 = No in ShouldProcess).</summary>
    public Queue<int> Answers { get; } = new();

    public List<string> Prompts { get; } = new();

    public override string Name => "KvmPS.Tests";
    public override Version Version => new(1, 0);
    public override Guid InstanceId { get; } = Guid.NewGuid();
    public override PSHostUserInterface UI => _ui;
    public override CultureInfo CurrentCulture => CultureInfo.InvariantCulture;
    public override CultureInfo CurrentUICulture => CultureInfo.InvariantCulture;
    public override void SetShouldExit(int exitCode) { }
    public override void EnterNestedPrompt() => throw new NotSupportedException();
    public override void ExitNestedPrompt() => throw new NotSupportedException();
    public override void NotifyBeginApplication() { }
    public override void NotifyEndApplication() { }

    private sealed class RecordingUI(RecordingHost host) : PSHostUserInterface
    {
        public override PSHostRawUserInterface? RawUI => null;
        public override string ReadLine() => throw NonInteractive();
        public override SecureString ReadLineAsSecureString() => throw NonInteractive();
        public override void Write(string value) => host.Lines.Add(value);
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) => host.Lines.Add(value);
        public override void WriteLine(string value) => host.Lines.Add(value);
        public override void WriteErrorLine(string value) => host.Lines.Add(value);
        public override void WriteDebugLine(string message) { }
        public override void WriteProgress(long sourceId, ProgressRecord record) { }
        public override void WriteVerboseLine(string message) { }
        public override void WriteWarningLine(string message) { }
        public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions) => throw NonInteractive();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) => throw NonInteractive();

        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName,
            PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) => throw NonInteractive();

        public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice)
        {
            host.Prompts.Add(message);
            return host.Answers.Count > 0 ? host.Answers.Dequeue() : throw NonInteractive();
        }

        // What pwsh -NonInteractive's console host throws when asked to prompt.
        private static PSInvalidOperationException NonInteractive() =>
            new("PowerShell is in NonInteractive mode. Read and Prompt functionality is not available.");
    }
}
