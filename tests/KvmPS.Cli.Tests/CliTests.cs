using System.Diagnostics;
using System.Text.Json;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Cli.Tests;

/// <summary>kvmps verbs in-process (CliApp over a sandbox store with the real kvmps-vmm).</summary>
[Collection(VmmCollection.Name)]
public sealed class CliTests : IDisposable
{
    private readonly LifecycleSandbox _sandbox;
    private readonly TempDirectory _dir = new();

    public CliTests(VmmFixture fixture) => _sandbox = new LifecycleSandbox(fixture);

    public void Dispose()
    {
        _sandbox.Dispose();
        _dir.Dispose();
    }

    private (int Code, string Out, string Err) RunWithInput(string stdin, params string[] args) => CliRun.With(_sandbox.Manager, stdin, args);

    private (int Code, string Out, string Err) Run(params string[] args) => RunWithInput("", args);

    private string Manifest(string text, string name = "host.psd1")
    {
        var path = Path.Combine(_dir.Path, name);
        File.WriteAllText(path, text);
        return path;
    }

    private const string Host = """
        @{ Defaults = @{ MemoryStartupBytes = 64MB; State = 'Running' }
           VirtualMachines = @( @{ Name = 'cli-a'; VcpuCount = 2 }, @{ Name = 'cli-b'; Notes = 'b' } ) }
        """;

    [Fact]
    public void Suspend_resume_and_restart_act_on_the_vmm_and_refuse_a_vm_that_is_off()
    {
        var (code, output, err) = Run("apply", Manifest("@{ VirtualMachines = @( @{ Name = 'cli-sr'; MemoryStartupBytes = 64MB; State = 'Running' } ) }"));
        Assert.True(code == 0, output + err);
        var firstPid = _sandbox.Manager.Get("cli-sr").Pid;

        (code, output, _) = Run("vm", "suspend", "cli-sr", "--json");
        Assert.Equal(0, code);
        Assert.Equal("Paused", JsonDocument.Parse(output).RootElement.GetProperty("state").GetString());
        Assert.Equal(VmState.Paused, _sandbox.Manager.Get("cli-sr").State);

        (code, output, _) = Run("vm", "resume", "cli-sr");
        Assert.Equal(0, code);
        Assert.Equal("VM 'cli-sr' is Running.", output.Trim());

        (code, output, err) = Run("vm", "restart", "cli-sr", "--force", "--json");
        Assert.True(code == 0, output + err);
        var restarted = JsonDocument.Parse(output).RootElement;
        Assert.Equal("Running", restarted.GetProperty("state").GetString());
        Assert.NotEqual(firstPid, _sandbox.Manager.Get("cli-sr").Pid);

        Assert.Equal(0, Run("vm", "stop", "cli-sr", "--force").Code);
        (code, _, err) = Run("vm", "suspend", "cli-sr");
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("cli-sr", err);
        (code, _, err) = Run("vm", "resume", "nosuch");
        Assert.Equal(ExitCodes.VmNotFound, code);
        Assert.Contains("nosuch", err);
        Assert.Equal(ExitCodes.Usage, Run("vm", "suspend").Code);
    }

    [Fact]
    public void Plan_apply_test_and_list_with_exit_codes()
    {
        var host = Manifest(Host);
        var (code, output, _) = Run("test", host, "--detailed");
        Assert.Equal(ExitCodes.Drift, code);
        Assert.StartsWith("False", output);
        Assert.Contains("cli-a", output);
        Assert.Contains("Ensure", output);

        (code, output, _) = Run("plan", host);
        Assert.Equal(0, code);
        Assert.Contains("Create", output);
        Assert.Contains("4 step(s).", output);

        (code, output, _) = Run("apply", host, "--what-if");
        Assert.Equal(0, code);
        Assert.Contains("What if:", output);
        Assert.Empty(_sandbox.Manager.List());

        (code, output, var err) = Run("apply", host);
        Assert.True(code == 0, output + err);
        Assert.Contains("[1/4] Create VM 'cli-a'", output);
        Assert.Contains("[4/4] done: VM 'cli-b' is Running", output);
        Assert.Contains("Applied 4 step(s).", output);

        (code, output, _) = Run("apply", host);
        Assert.Equal(0, code);
        Assert.Equal("Nothing to do: the host is in the desired state.", output.Trim());

        (code, output, _) = Run("test", host);
        Assert.Equal(0, code);
        Assert.Equal("True", output.Trim());

        (code, output, _) = Run("vm", "list");
        Assert.Equal(0, code);
        var lines = output.Trim().Split('\n');
        Assert.StartsWith("NAME", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("cli-a ", StringComparison.Ordinal) && l.Contains("Running") && l.Contains("64MB"));

        (code, output, _) = Run("vm", "list", "--json");
        Assert.Equal(0, code);
        var vms = JsonDocument.Parse(output).RootElement;
        Assert.Equal(2, vms.GetArrayLength());
        Assert.Equal("Running", vms[0].GetProperty("state").GetString());

        (code, output, _) = Run("test", host, "--json");
        Assert.True(JsonDocument.Parse(output).RootElement.GetProperty("inDesiredState").GetBoolean());

        (code, output, _) = Run("get", host, "--json");
        Assert.Equal(0, code);
        Assert.Equal(2, JsonDocument.Parse(output).RootElement.GetProperty("vms").GetArrayLength());

        (code, _, _) = Run("vm", "stop", "cli-b", "--force");
        Assert.Equal(0, code);
        (code, output, _) = Run("test", host, "--detailed");
        Assert.Equal(ExitCodes.Drift, code);
        Assert.Contains("State", output);

        (code, _, _) = Run("vm", "remove", "cli-a");
        Assert.Equal(ExitCodes.OperationFailed, code); // running: needs --force
        (code, _, _) = Run("vm", "remove", "cli-a", "--force");
        Assert.Equal(0, code);
    }

    [Fact]
    public void Errors_map_to_documented_exit_codes()
    {
        Assert.Equal(ExitCodes.Usage, Run().Code);
        Assert.Equal(ExitCodes.Usage, Run("frobnicate").Code);
        Assert.Equal(ExitCodes.Usage, Run("apply").Code);
        Assert.Equal(ExitCodes.Usage, Run("apply", "x.psd1", "--bogus").Code);
        Assert.Equal(ExitCodes.Ok, Run("--help").Code);
        Assert.Equal(ExitCodes.Ok, Run("apply", "--help").Code);
        var version = Run("--version");
        Assert.Equal(ExitCodes.Ok, version.Code);
        Assert.StartsWith("kvmps ", version.Out);

        var bad = Manifest("@{ VirtualMachines = @( @{ Name = 'x'; MemoryStartupBytes = 64MB; Vcpus = 2 } ) }", "bad.psd1");
        var (code, _, err) = Run("apply", bad);
        Assert.Equal(ExitCodes.ManifestError, code);
        Assert.Contains($"{bad}:1:67: VM 'x': Vcpus: unknown key 'Vcpus'", err);
        Assert.Empty(_sandbox.Manager.List());
        Assert.Equal(ExitCodes.ManifestError, Run("test", Path.Combine(_dir.Path, "missing.psd1")).Code);

        Assert.Equal(ExitCodes.VmNotFound, Run("vm", "start", "nope").Code);
    }

    [Fact]
    public void Apply_failure_returns_4_and_rerun_continues()
    {
        var missing = Path.Combine(_dir.Path, "no-kernel");
        var host = Manifest($$"""
            @{ Defaults = @{ MemoryStartupBytes = 64MB; State = 'Running' }
               VirtualMachines = @( @{ Name = 'f-a' }, @{ Name = 'f-b'; Boot = @{ KernelPath = '{{missing}}' } }, @{ Name = 'f-c' } ) }
            """);
        var (code, output, err) = Run("apply", host);
        Assert.Equal(ExitCodes.OperationFailed, code);
        Assert.Contains("FAILED", output);
        Assert.Contains("Start VM 'f-b' failed", err);
        Assert.Contains("1 step(s) not run", output);

        File.WriteAllText(host, File.ReadAllText(host).Replace(missing, _sandbox.Fixture.GuestElfPath));
        (code, output, err) = Run("apply", host);
        Assert.True(code == 0, output + err);
        Assert.All(_sandbox.Manager.List(), vm => Assert.Equal(VmState.Running, vm.State));
    }

    // ---- DSC v3 ---------------------------------------------------------------------------------------

    [Fact]
    public void Dsc_get_test_set_in_process()
    {
        var (code, output, _) = RunWithInput("""{"Name":"dsc-1"}""", "dsc", "get");
        Assert.Equal(0, code);
        Assert.Equal("""{"Name":"dsc-1","Ensure":"Absent"}""", output.Trim());

        var desired = """{"Name":"dsc-1","Ensure":"Present","State":"Running","StartupMemory":67108864,"ProcessorCount":2,"Notes":"from dsc"}""";
        (code, output, _) = RunWithInput(desired, "dsc", "test");
        Assert.Equal(0, code); // dsc reads _inDesiredState; the exit status is for errors
        var lines = output.Trim().Split('\n');
        Assert.Equal(2, lines.Length);
        Assert.False(JsonDocument.Parse(lines[0]).RootElement.GetProperty("_inDesiredState").GetBoolean());
        Assert.Equal("""["Ensure"]""", lines[1].Trim());

        (code, output, var err) = RunWithInput(desired, "dsc", "set");
        Assert.True(code == 0, err);
        lines = output.Trim().Split('\n');
        var after = JsonDocument.Parse(lines[0]).RootElement;
        Assert.Equal("Present", after.GetProperty("Ensure").GetString());
        Assert.Equal("Running", after.GetProperty("State").GetString());
        Assert.Equal(2, after.GetProperty("ProcessorCount").GetInt32());
        Assert.Equal(67108864, after.GetProperty("StartupMemory").GetInt64());
        Assert.Equal("""["Ensure"]""", lines[1].Trim());

        (code, output, _) = RunWithInput(desired, "dsc", "test");
        Assert.True(JsonDocument.Parse(output.Trim().Split('\n')[0]).RootElement.GetProperty("_inDesiredState").GetBoolean());
        Assert.Equal("[]", output.Trim().Split('\n')[1].Trim());

        // Only stated properties are enforced: a 3-vCPU request with nothing else changes just that.
        (code, output, _) = RunWithInput("""{"Name":"dsc-1","ProcessorCount":3,"RestartIfNeeded":true}""", "dsc", "set");
        Assert.Equal(0, code);
        Assert.Equal("""["ProcessorCount","MaximumProcessorCount"]""", output.Trim().Split('\n')[1].Trim());
        var vm = _sandbox.Manager.Get("dsc-1");
        Assert.Equal(3, vm.Live!.Vcpus);
        Assert.Equal("from dsc", vm.Definition.Notes);

        (code, output, _) = RunWithInput("""{"Name":"dsc-1","Ensure":"Absent"}""", "dsc", "set");
        Assert.Equal(0, code);
        Assert.Equal("""{"Name":"dsc-1","Ensure":"Absent"}""", output.Trim().Split('\n')[0]);
        Assert.Null(_sandbox.Manager.TryGet("dsc-1"));
    }

    [Fact]
    public void Dsc_bad_input_is_exit_3()
    {
        Assert.Equal(ExitCodes.ManifestError, RunWithInput("not json", "dsc", "get").Code);
        Assert.Equal(ExitCodes.ManifestError, RunWithInput("[1]", "dsc", "test").Code);
        Assert.Equal(ExitCodes.ManifestError, RunWithInput("{}", "dsc", "test").Code);
        var (code, _, err) = RunWithInput("""{"Name":"x","Cpus":2}""", "dsc", "set");
        Assert.Equal(ExitCodes.ManifestError, code);
        Assert.Contains("unknown property 'Cpus'", err);
        (code, _, err) = RunWithInput("""{"Name":"x","ProcessorCount":0}""", "dsc", "set");
        Assert.Equal(ExitCodes.ManifestError, code);
        Assert.Contains("ProcessorCount: must be at least 1", err);
        // "_exist": false must not create the VM (it was skipped like _inDesiredState).
        (code, _, err) = RunWithInput("""{"Name":"x","_exist":false}""", "dsc", "set");
        Assert.Equal(ExitCodes.ManifestError, code);
        Assert.Contains("_exist is not supported; use \"Ensure\": \"Absent\"", err);
        Assert.Equal(ExitCodes.Usage, RunWithInput("{}", "dsc", "export").Code);
        Assert.Empty(_sandbox.Manager.List());
    }

    /// <summary>As dsc drives it: the kvmps executable, instance JSON on stdin, JSON lines on stdout.</summary>
    [Fact]
    public void Dsc_protocol_out_of_process()
    {
        var kvmps = Path.Combine(AppContext.BaseDirectory, "kvmps.dll");
        Assert.True(File.Exists(kvmps), kvmps);
        (int, string, string) Exec(string input, params string[] args)
        {
            var info = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
            info.ArgumentList.Add("exec");
            info.ArgumentList.Add(kvmps);
            foreach (var a in args)
                info.ArgumentList.Add(a);
            info.Environment["KVMPS_HOME"] = _sandbox.Root;
            info.Environment["KVMPS_VMM"] = _sandbox.Fixture.VmmPath;
            info.Environment["DOTNET_ROLL_FORWARD"] = "Major";
            using var process = Process.Start(info)!;
            process.StandardInput.Write(input);
            process.StandardInput.Close();
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            Assert.True(process.WaitForExit(60_000));
            return (process.ExitCode, stdout.Result, stderr.Result);
        }

        var instance = """{"Name":"dsc-x","State":"Running","StartupMemory":67108864}""";
        var (code, output, err) = Exec(instance, "dsc", "set");
        Assert.True(code == 0, err);
        Assert.Equal("Running", JsonDocument.Parse(output.Split('\n')[0]).RootElement.GetProperty("State").GetString());
        (code, output, _) = Exec(instance, "dsc", "test");
        Assert.Equal(0, code);
        Assert.True(JsonDocument.Parse(output.Split('\n')[0]).RootElement.GetProperty("_inDesiredState").GetBoolean());
        (code, output, _) = Exec("""{"Name":"dsc-x"}""", "dsc", "get");
        Assert.Equal(0, code);
        Assert.Equal("Present", JsonDocument.Parse(output).RootElement.GetProperty("Ensure").GetString());
        (code, _, err) = Exec("{", "dsc", "get");
        Assert.Equal(3, code);
        Assert.Contains("not valid JSON", err);
    }

    [Fact]
    public void Resource_manifest_is_valid_json_with_the_dsc_shape()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "kvmps.dsc.resource.json");
        var manifest = JsonDocument.Parse(File.ReadAllText(path)).RootElement;
        Assert.Equal("KvmPS/VirtualMachine", manifest.GetProperty("type").GetString());
        foreach (var op in new[] { "get", "set", "test" })
        {
            var method = manifest.GetProperty(op);
            Assert.Equal("kvmps", method.GetProperty("executable").GetString());
            Assert.Equal(new[] { "dsc", op }, method.GetProperty("args").EnumerateArray().Select(a => a.GetString()));
            Assert.Equal("stdin", method.GetProperty("input").GetString());
        }
        var properties = manifest.GetProperty("schema").GetProperty("embedded").GetProperty("properties");
        foreach (var (dsc, _) in DscCommand.Properties)
            Assert.True(properties.TryGetProperty(dsc, out _), dsc);
        Assert.True(properties.TryGetProperty("_inDesiredState", out _));
    }
}
