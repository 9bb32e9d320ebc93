using KvmPS.Management.Lifecycle;

namespace KvmPS.Cli;

/// <summary><c>kvmps autostart</c>: starts the pools, networks and VMs marked Autostart (the boot-time unit).</summary>
public sealed partial class CliApp
{
    // ---- autostart ---------------------------------------------------------------------------------------

    private int Autostart(ArgReader args) => WithHelp("autostart", () =>
    {
        var options = args.Parse("--json");
        if (options.Help)
            throw new HelpRequested("autostart");
        if (options.Positional.Count > 0)
            throw new UsageException("autostart: takes no arguments");
        var results = Manager.Autostart();
        if (options.Has("--json"))
        {
            Out.WriteLine(CliOutput.Json(w =>
            {
                w.WriteStartArray();
                foreach (var r in results)
                {
                    w.WriteStartObject();
                    w.WriteString("kind", r.Kind.ToString());
                    w.WriteString("name", r.Name);
                    w.WriteString("outcome", r.Outcome.ToString());
                    CliOutput.WriteNullable(w, "state", r.Info?.State.ToString());
                    CliOutput.WriteNullable(w, "error", r.Error?.Message);
                    w.WriteEndObject();
                }
                w.WriteEndArray();
            }));
        }
        else
        {
            if (!results.Any(r => r.Kind == AutostartResourceKind.Vm))
                Out.WriteLine("No VMs have Autostart set.");
            foreach (var r in results)
                Out.WriteLine((r.Kind, r.Outcome) switch
                {
                    (_, AutostartOutcome.Failed) => $"{Label(r)}: FAILED: {r.Error?.Message}",
                    (AutostartResourceKind.Pool, AutostartOutcome.Started) => $"{Label(r)}: folder re-created",
                    (AutostartResourceKind.Pool, _) => $"{Label(r)}: ready",
                    (AutostartResourceKind.Network, AutostartOutcome.Started) => $"{Label(r)}: started",
                    (AutostartResourceKind.Network, _) => $"{Label(r)}: already active",
                    (_, AutostartOutcome.Started) => $"{r.Name}: started ({r.Info?.State})",
                    _ => $"{r.Name}: already running",
                });
        }
        return results.Any(r => r.Outcome == AutostartOutcome.Failed) ? ExitCodes.OperationFailed : ExitCodes.Ok;

        static string Label(AutostartResult r) => r.Kind switch
        {
            AutostartResourceKind.Pool => $"pool {r.Name}",
            AutostartResourceKind.Network => $"network {r.Name}",
            _ => r.Name,
        };
    });
}
