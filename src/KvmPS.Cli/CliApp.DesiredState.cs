using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Cli;

/// <summary><c>kvmps apply|plan|test|get</c>: manifests against this host's store.</summary>
public sealed partial class CliApp
{
    // ---- desired state ---------------------------------------------------------------------------------

    private DesiredHostState ReadManifests(ArgReader args, string verb, params string[] flags)
    {
        var options = args.Parse(flags);
        if (options.Help)
            throw new HelpRequested(verb);
        if (options.Positional.Count == 0)
            throw new UsageException($"{verb}: give at least one manifest file (kvmps {verb} FILE...)");
        _options = options;
        // "-": one manifest on stdin, as 'kvmps apply FILE' sends a manifest naming its HostName (docs/remote.md).
        if (options.Positional is ["-"])
            return DesiredStateReader.Parse(In.ReadToEnd(), "<stdin>", Directory.GetCurrentDirectory(), hostNameAllowed: true);
        return DesiredStateReader.ReadFiles(options.Positional);
    }

    private ParsedArgs _options = ParsedArgs.Empty;

    internal int WithHelp(string verb, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (HelpRequested)
        {
            Out.Write(HelpText.For(verb));
            return ExitCodes.Ok;
        }
    }

    private int Apply(ArgReader args) => WithHelp("apply", () =>
    {
        var desired = ReadManifests(args, "apply", "--what-if", "--json");
        var json = _options.Has("--json");
        var reconciler = NewReconciler();
        if (_options.Has("--what-if"))
            return WritePlan(reconciler.Plan(desired), json, whatIf: true);

        var progress = json ? null : new SynchronousProgress(p =>
        {
            var step = $"[{p.Step}/{p.StepCount}]";
            Out.WriteLine(p.Stage switch
            {
                ProgressStage.StepStarted => $"{step} {p.Status} ...",
                ProgressStage.StepDone => $"{step} done: {p.Status}",
                _ => $"{step} FAILED: {p.Status}",
            });
            Out.Flush();
        });
        var result = reconciler.Set(desired, progress);
        if (json)
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteBoolean("succeeded", result.Succeeded);
                w.WriteBoolean("changed", result.Changed);
                w.WriteStartArray("results");
                foreach (var r in result.Results)
                {
                    w.WriteStartObject();
                    w.WriteString("kind", r.Action.Kind.ToString());
                    w.WriteString("vmName", r.Action.VmName);
                    w.WriteString("description", r.Action.Description);
                    w.WriteString("status", r.Status.ToString());
                    w.WriteString("message", r.Message);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteStartArray("warnings");
                foreach (var warning in result.Plan.Warnings)
                    w.WriteStringValue(warning);
                w.WriteEndArray();
                w.WriteEndObject();
            }));
        }
        else
        {
            foreach (var warning in result.Plan.Warnings)
                Err.WriteLine($"kvmps: warning: {warning}");
            if (result.Plan.IsEmpty)
                Out.WriteLine("Nothing to do: the host is in the desired state.");
            else if (result.Succeeded)
                Out.WriteLine($"Applied {result.Results.Count} step(s).");
            else
            {
                var notRun = result.Results.Count(r => r.Status == ReconcileActionStatus.NotRun);
                Out.WriteLine($"Apply stopped at a failed step; {notRun} step(s) not run. Fix the cause and run 'kvmps apply' again to continue.");
            }
        }
        if (result.Failure is { } failure)
        {
            Err.WriteLine($"kvmps: {failure.Action.Description} failed: {failure.Message}");
            return failure.Error is { } e && ExitCodeFor(e) == ExitCodes.Environment ? ExitCodes.Environment : ExitCodes.OperationFailed;
        }
        return ExitCodes.Ok;
    });

    private int Plan(ArgReader args) => WithHelp("plan", () =>
    {
        var desired = ReadManifests(args, "plan", "--json");
        return WritePlan(NewReconciler().Plan(desired), _options.Has("--json"), whatIf: false);
    });

    private int WritePlan(ReconcilePlan plan, bool json, bool whatIf)
    {
        if (json)
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                CliOutput.WritePlan(w, plan);
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        foreach (var warning in plan.Warnings)
            Err.WriteLine($"kvmps: warning: {warning}");
        if (plan.IsEmpty)
        {
            Out.WriteLine("Nothing to do: the host is in the desired state.");
            return ExitCodes.Ok;
        }
        var prefix = whatIf ? "What if: " : "";
        for (var i = 0; i < plan.Actions.Count; i++)
            Out.WriteLine($"{prefix}{i + 1,3}. {plan.Actions[i].Kind,-18} {plan.Actions[i].Description}");
        Out.WriteLine($"{plan.Actions.Count} step(s){(whatIf ? "; nothing was changed" : "")}.");
        return ExitCodes.Ok;
    }

    private int Test(ArgReader args) => WithHelp("test", () =>
    {
        var desired = ReadManifests(args, "test", "--detailed", "--json", "--quiet");
        var drifts = NewReconciler().Test(desired);
        if (_options.Has("--json"))
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteBoolean("inDesiredState", drifts.Count == 0);
                w.WriteStartArray("drift");
                foreach (var d in drifts)
                    CliOutput.WriteDrift(w, d);
                w.WriteEndArray();
                w.WriteEndObject();
            }));
        }
        else if (!_options.Has("--quiet"))
        {
            Out.WriteLine(drifts.Count == 0 ? "True" : "False");
            if (_options.Has("--detailed") && drifts.Count > 0)
                CliOutput.Table(Out, new[] { "VM", "PROPERTY", "EXPECTED", "ACTUAL" },
                    drifts.Select(d => (IReadOnlyList<string>)new[] { d.VmName, d.Property, d.Expected ?? "-", d.Actual ?? "-" }));
        }
        return drifts.Count == 0 ? ExitCodes.Ok : ExitCodes.Drift;
    });

    private int Get(ArgReader args) => WithHelp("get", () =>
    {
        var desired = ReadManifests(args, "get", "--json");
        var status = NewReconciler().Get(desired);
        if (_options.Has("--json"))
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartObject();
                w.WriteBoolean("inDesiredState", status.InDesiredState);
                w.WriteStartArray("vms");
                foreach (var vm in status.Vms)
                {
                    w.WriteStartObject();
                    w.WriteString("name", vm.Name);
                    w.WriteString("ensure", vm.Desired.Ensure.ToString());
                    CliOutput.WriteNullable(w, "desiredState", vm.Desired.State?.ToString());
                    w.WriteBoolean("exists", vm.Exists);
                    w.WriteBoolean("inDesiredState", vm.InDesiredState);
                    w.WritePropertyName("actual");
                    if (vm.Actual is { } actual)
                        CliOutput.WriteVm(w, actual);
                    else
                        w.WriteNullValue();
                    w.WriteStartArray("drift");
                    foreach (var d in vm.Drifts)
                        CliOutput.WriteDrift(w, d);
                    w.WriteEndArray();
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                HostSriovOutput.WriteJson(w, status);
                w.WriteStartArray("unmanaged");
                foreach (var vm in status.Unmanaged)
                    CliOutput.WriteVm(w, vm);
                w.WriteEndArray();
                w.WriteEndObject();
            }));
            return ExitCodes.Ok;
        }
        CliOutput.Table(Out, new[] { "NAME", "ENSURE", "WANTED", "STATE", "VCPUS", "MEMORY", "IN-DESIRED-STATE" },
            status.Vms.Select(vm => (IReadOnlyList<string>)new[]
            {
                vm.Name,
                vm.Desired.Ensure.ToString(),
                vm.Desired.Ensure == VmEnsure.Absent ? "-" : vm.Desired.State?.ToString() ?? "(any)",
                vm.Actual?.State.ToString() ?? "(absent)",
                vm.Actual is { } a ? (a.Live?.Vcpus ?? a.Definition.Vcpus.Count).ToString() : "-",
                vm.Actual is { } b ? CliOutput.Bytes(b.Definition.Memory.StartupBytes) : "-",
                vm.InDesiredState ? "yes" : "no",
            }));
        HostSriovOutput.WriteTable(Out, status);
        if (status.Unmanaged.Count > 0)
            Out.WriteLine($"Not in the manifest: {string.Join(", ", status.Unmanaged.Select(v => $"{v.Name} ({v.State})"))}");
        return ExitCodes.Ok;
    });
}
