using System.Text.Json;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Management.Remote;

/// <summary>One VM a remote manifest names, as that host's <c>kvmps get - --json</c> reported it.</summary>
/// <param name="Actual">Null when the VM does not exist there.</param>
public sealed record RemoteDesiredVmStatus(
    string HostName, string Name, string Ensure, string? DesiredState, bool Exists, bool InDesiredState,
    RemoteVmInfo? Actual, IReadOnlyList<Drift> Drifts);

/// <summary>Outcome of <see cref="RemoteReconciler.Get"/>.</summary>
public sealed record RemoteDesiredHostStatus(string HostName, IReadOnlyList<RemoteDesiredVmStatus> Vms, IReadOnlyList<RemoteVmInfo> Unmanaged);

/// <summary>Outcome of <see cref="RemoteReconciler.Set"/>: each step's result (failed ones carry a <see cref="RemoteCommandFailedException"/>).</summary>
public sealed record RemoteReconcileResult(string HostName, IReadOnlyList<ReconcileActionResult> Results, IReadOnlyList<string> Warnings)
{
    public bool Succeeded => Results.All(r => r.Status == ReconcileActionStatus.Done);
}

/// <summary>
/// The <see cref="Reconciler"/> of another host: plan, set, test and get for one manifest, run there as
/// <c>kvmps VERB --json -</c> with the manifest on stdin (that kvmps accepts its HostName from stdin only), and the
/// JSON read back into the management types. Used by the cmdlets; the CLI passes the remote output through as text.
/// </summary>
public sealed class RemoteReconciler(RemoteKvmps kvmps)
{
    // The remote kvmps's statuses that still come with a JSON answer (docs/cli.md): drift, a failed step, the environment.
    private const int DriftExitCode = 1;
    private const int OperationFailedExitCode = 4;
    private const int EnvironmentExitCode = 6;

    public string HostName => kvmps.Target.ToString();

    public ReconcilePlan Plan(string manifestText)
    {
        using var json = kvmps.RunJson(["plan", "--json", "-"], manifestText);
        var root = Object(json.RootElement, "plan");
        var actions = Array(root, "actions").Select(a => new ReconcileAction(
            Kind(a), Text(a, "vmName"), Text(a, "description"), Text(a, "reason"), Array(a, "changes").Select(ReadDrift).ToList())).ToList();
        return new ReconcilePlan(actions, Array(root, "drift").Select(ReadDrift).ToList(), Strings(root, "warnings"));
    }

    public RemoteReconcileResult Set(string manifestText)
    {
        using var json = kvmps.RunJson(["apply", "--json", "-"], manifestText, [OperationFailedExitCode, EnvironmentExitCode]);
        var root = Object(json.RootElement, "apply");
        var results = Array(root, "results").Select(r =>
        {
            var statusText = Text(r, "status");
            if (!Enum.TryParse<ReconcileActionStatus>(statusText, ignoreCase: false, out var status))
                throw Protocol($"unknown step status '{statusText}'");
            var action = new ReconcileAction(Kind(r), Text(r, "vmName"), Text(r, "description"), "", []);
            var message = Text(r, "message");
            var error = status == ReconcileActionStatus.Failed ? new RemoteCommandFailedException(HostName, OperationFailedExitCode, $"{action.Description}: {message}") : null;
            return new ReconcileActionResult(action, status, message, error);
        }).ToList();
        return new RemoteReconcileResult(HostName, results, Strings(root, "warnings"));
    }

    /// <summary>The properties that differ there; empty when that host is in the desired state.</summary>
    public IReadOnlyList<Drift> Test(string manifestText)
    {
        using var json = kvmps.RunJson(["test", "--json", "-"], manifestText, [DriftExitCode]);
        return Array(Object(json.RootElement, "test"), "drift").Select(ReadDrift).ToList();
    }

    public RemoteDesiredHostStatus Get(string manifestText)
    {
        using var json = kvmps.RunJson(["get", "--json", "-"], manifestText);
        var root = Object(json.RootElement, "get");
        var vms = Array(root, "vms").Select(v => new RemoteDesiredVmStatus(
            HostName, Text(v, "name"), Text(v, "ensure"),
            v.TryGetProperty("desiredState", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null,
            Bool(v, "exists"), Bool(v, "inDesiredState"),
            v.TryGetProperty("actual", out var a) && a.ValueKind == JsonValueKind.Object ? RemoteVmInfo.FromJson(HostName, a) : null,
            Array(v, "drift").Select(ReadDrift).ToList())).ToList();
        return new RemoteDesiredHostStatus(HostName, vms, Array(root, "unmanaged").Select(u => RemoteVmInfo.FromJson(HostName, u)).ToList());
    }

    private Drift ReadDrift(JsonElement d) => new(Text(d, "vmName"), Text(d, "property"), NullableText(d, "expected"), NullableText(d, "actual"));

    private ReconcileActionKind Kind(JsonElement e)
    {
        var text = Text(e, "kind");
        return Enum.TryParse<ReconcileActionKind>(text, ignoreCase: false, out var kind) ? kind : throw Protocol($"unknown step kind '{text}' (the remote kvmps may be newer)");
    }

    private JsonElement Object(JsonElement e, string verb) =>
        e.ValueKind == JsonValueKind.Object ? e : throw Protocol($"'{verb} --json' did not print an object");

    private IEnumerable<JsonElement> Array(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().ToList() : throw Protocol($"the field '{name}' is missing or not an array");

    private IReadOnlyList<string> Strings(JsonElement e, string name) =>
        Array(e, name).Select(s => s.ValueKind == JsonValueKind.String ? s.GetString()! : throw Protocol($"'{name}' holds a {s.ValueKind}, not a string")).ToList();

    private string Text(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Protocol($"the field '{name}' is missing or not a string");

    private string? NullableText(JsonElement e, string name) =>
        !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw Protocol($"the field '{name}' is not a string");

    private bool Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Protocol($"the field '{name}' is missing or not a boolean");

    private RemoteProtocolException Protocol(string detail) => new(HostName, detail);
}
