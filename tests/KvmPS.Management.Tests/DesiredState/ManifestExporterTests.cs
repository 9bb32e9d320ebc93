using KvmPS.Management.Definitions;
using KvmPS.Management.DesiredState;
using KvmPS.Management.Lifecycle;
using KvmPS.Management.Manifests;
using KvmPS.Management.Tests.TestSupport;

namespace KvmPS.Management.Tests.DesiredState;

/// <summary>Export → DesiredStateReader → planner: the exported manifest describes exactly what was exported.</summary>
public sealed class ManifestExporterTests
{
    private static (DesiredHostState Desired, string Text) RoundTrip(IList<string>? warnings, params (VmDefinition, VmState)[] vms)
    {
        var text = ManifestExporter.Write(vms, warnings);
        return (DesiredStateReader.Parse(text, "exported.psd1", "/nonexistent-base"), text);
    }

    private static void AssertClean(DesiredHostState desired, params (VmDefinition Definition, VmState State)[] vms)
    {
        var actual = vms.ToDictionary(v => v.Definition.Name, v => new ActualVm(v.Definition.Name, v.Definition, v.State, v.State != VmState.Off), StringComparer.Ordinal);
        var plan = ReconcilePlanner.Plan(desired, actual);
        Assert.True(plan.IsEmpty, string.Join("; ", plan.Drifts.Select(d => $"{d.VmName}.{d.Property}: {d.Actual} -> {d.Expected}")));
        Assert.Empty(plan.Drifts);
    }

    [Fact]
    public void Every_definition_feature_round_trips_and_the_plan_is_empty()
    {
        var full = TestDefinitions.Full("full-vm");
        var minimal = TestDefinitions.Minimal("minimal");
        var kernel = TestDefinitions.Minimal("kernel-vm") with
        {
            Vcpus = new VcpuSettings(1, 4),
            Boot = new DirectKernelBoot("/srv/kernels/my kernel's bzImage", "/srv/initrd dir/initrd.img", "console=ttyS0 root=\"/dev/vda 1\" $HOME `x`"),
        };
        var guestCmdline = TestDefinitions.Minimal("guest-cmd") with { Boot = new DefaultGuestBoot("kvmps.run=poweroff") };
        var vms = new[] { (full, VmState.Running), (minimal, VmState.Off), (kernel, VmState.Paused), (guestCmdline, VmState.Off) };
        var warnings = new List<string>();

        var (desired, _) = RoundTrip(warnings, vms);

        Assert.Empty(warnings);
        Assert.Equal(vms.Select(v => v.Item1.Name), desired.Vms.Select(v => v.Name));
        foreach (var (definition, state) in vms)
        {
            var vm = desired.Find(definition.Name)!;
            Assert.Equal(VmEnsure.Present, vm.Ensure);
            Assert.Equal(definition, vm.Definition);
            Assert.Equal(state.ToString(), vm.State.ToString());
            // Everything the planner compares is stated, so later drift in any of it is reported.
            Assert.Equal(DefinitionOverlay.Properties.Where(p => p is not ("HugePages" or "KsmEnabled" or "NumaNode" or "Boot" or "LogMaxBytes" or "LogFileCount" or "BootOnce" or "Display" or "CpuRelativeWeight" or "CpuMaximumPercent" or "VmmOverheadLimitBytes") || vm.ManagedProperties.Contains(p)).Order(),
                vm.ManagedProperties.Order());
        }
        AssertClean(desired, vms);
    }

    [Fact]
    public void The_exported_manifest_reports_later_drift()
    {
        var vm = TestDefinitions.Minimal("drifty");
        var (desired, _) = RoundTrip(null, (vm, VmState.Running));
        var changed = new Dictionary<string, ActualVm>
        {
            ["drifty"] = new("drifty", vm with { Vcpus = new VcpuSettings(2, 2), Disks = new[] { new DiskDefinition("extra.raw") } }, VmState.Off, false),
        };
        var drifts = ReconcilePlanner.Plan(desired, changed).Drifts.Select(d => d.Property).Order();
        Assert.Equal(new[] { "Disks", "State", "VcpuCount", "VcpuMaximum" }, drifts);
    }

    public static TheoryData<string> AwkwardNotes() => new()
    {
        "it's \"quoted\"",
        "line 1\nline 2\r\nline 3\rend",
        "tab\there, bell\a, escape \u001B[0m, nul \0 end",
        "$env:HOME $(Get-Date) ${x} `backtick` @{ a = 1 }",
        "typographic \u2018single\u2019 \u201Adouble\u201B \u201Cquotes\u201D \u201E",
        "unicode: Grüße, 日本語, emoji \U0001F600, line sep \u2028 para sep \u2029 nel \u0085",
        "trailing quote'",
        "'",
        "",
        "   leading and trailing blanks   ",
        "# not a comment <# nor this #>",
    };

    [Theory]
    [MemberData(nameof(AwkwardNotes))]
    public void Notes_with_any_characters_round_trip(string notes)
    {
        var vm = TestDefinitions.Minimal("notes-vm") with { Notes = notes };
        var (desired, text) = RoundTrip(null, (vm, VmState.Off));
        Assert.Equal(notes, desired.Vms.Single().Definition!.Notes);
        // One line per value: no raw line break inside a string.
        Assert.Single(text.Split('\n'), l => l.TrimStart().StartsWith("Notes", StringComparison.Ordinal));
        AssertClean(desired, (vm, VmState.Off));
    }

    [Fact]
    public void Every_control_character_round_trips_as_a_string_literal()
    {
        for (var c = 0; c < 0x100; c++)
        {
            var value = $"a{(char)c}b";
            var literal = PsdLiteral.String(value);
            Assert.DoesNotContain('\n', literal);
            Assert.DoesNotContain('\r', literal);
            var parsed = Assert.IsType<PsdString>(PsdReader.ParseValue(literal));
            Assert.Equal(value, parsed.Value);
        }
    }

    [Theory]
    [InlineData(256L << 20, "256MB")]
    [InlineData(1L << 30, "1GB")]
    [InlineData(3L << 40, "3TB")]
    [InlineData(4096, "4KB")]
    [InlineData(1536L << 20, "1536MB")]
    [InlineData(1000, "1000")]
    [InlineData(0, "0")]
    public void Sizes_use_the_largest_exact_suffix(long bytes, string expected)
    {
        Assert.Equal(expected, PsdLiteral.Size(bytes));
        Assert.Equal(bytes, Convert.ToInt64(((PsdNumber)PsdReader.ParseValue(expected)).Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Theory]
    [InlineData(VmState.Crashed)]
    [InlineData(VmState.Starting)]
    [InlineData(VmState.Stopping)]
    [InlineData(VmState.Unknown)]
    public void A_transient_or_failed_state_is_left_out_with_a_warning(VmState state)
    {
        var vm = TestDefinitions.Minimal("odd");
        var warnings = new List<string>();
        var (desired, text) = RoundTrip(warnings, (vm, state));
        Assert.Null(desired.Vms.Single().State);
        Assert.Contains($"was {state} when exported", text);
        Assert.Contains(warnings, w => w.Contains("'odd'") && w.Contains(state.ToString()));
        AssertClean(desired, (vm, state));
    }

    [Fact]
    public void No_vms_is_a_valid_empty_manifest()
    {
        var (desired, text) = RoundTrip(null);
        Assert.Empty(desired.Vms);
        Assert.Contains("VirtualMachines = @()", text);
    }

    [Fact]
    public void A_relative_boot_path_is_warned_about()
    {
        var vm = TestDefinitions.Minimal("rel") with { Boot = new DirectKernelBoot("vmlinuz") };
        var warnings = new List<string>();
        ManifestExporter.Write(new[] { (vm, VmState.Off) }, warnings);
        Assert.Contains(warnings, w => w.Contains("'vmlinuz'") && w.Contains("relative"));
    }

    [Fact]
    public void WriteFile_does_not_replace_an_existing_file_unless_asked()
    {
        using var dir = new TempDirectory();
        var path = Path.Combine(dir.Path, "my host.psd1");
        ManifestExporter.WriteFile(path, "@{ VirtualMachines = @() }\n", overwrite: false);
        Assert.Equal("@{ VirtualMachines = @() }\n", File.ReadAllText(path));

        var e = Assert.Throws<ManifestFileExistsException>(() => ManifestExporter.WriteFile(path, "new", overwrite: false));
        Assert.Equal(path, e.Path);
        Assert.Equal("@{ VirtualMachines = @() }\n", File.ReadAllText(path));

        ManifestExporter.WriteFile(path, "new", overwrite: true);
        Assert.Equal("new", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(dir.Path)); // no temporary file left behind

        Assert.Throws<IOException>(() => ManifestExporter.WriteFile(dir.Path, "x", overwrite: true));
        Assert.ThrowsAny<IOException>(() => ManifestExporter.WriteFile(Path.Combine(dir.Path, "no-dir", "x.psd1"), "x", overwrite: false));
    }
}
