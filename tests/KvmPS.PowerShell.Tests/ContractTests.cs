using System.Collections;
using System.Xml.Linq;
using KvmPS.HelpGen;
using KvmPS.Management.Manifests;

namespace KvmPS.PowerShell.Tests;

/// <summary>
/// The module's public contract, checked from KvmPS.dll's metadata, KvmPS.psd1 and docs/en-US: approved verbs,
/// parameter sets and pipeline binding as designed, ShouldProcess/ConfirmImpact, OutputType, exports, help pages.
/// </summary>
public class ContractTests
{
    /// <summary>Get-Verb in pwsh 7.4.</summary>
    private static readonly HashSet<string> ApprovedVerbs = new(StringComparer.Ordinal)
    {
        // Common
        "Add", "Clear", "Close", "Copy", "Enter", "Exit", "Find", "Format", "Get", "Hide", "Join", "Lock", "Move", "New", "Open",
        "Optimize", "Pop", "Push", "Redo", "Remove", "Rename", "Reset", "Resize", "Search", "Select", "Set", "Show", "Skip",
        "Split", "Step", "Switch", "Undo", "Unlock", "Watch",
        // Communications
        "Connect", "Disconnect", "Read", "Receive", "Send", "Write",
        // Data
        "Backup", "Checkpoint", "Compare", "Compress", "Convert", "ConvertFrom", "ConvertTo", "Dismount", "Edit", "Expand",
        "Export", "Group", "Import", "Initialize", "Limit", "Merge", "Mount", "Out", "Publish", "Restore", "Save", "Sync",
        "Unpublish", "Update",
        // Diagnostic
        "Debug", "Measure", "Ping", "Repair", "Resolve", "Test", "Trace",
        // Lifecycle
        "Approve", "Assert", "Build", "Complete", "Confirm", "Deny", "Deploy", "Disable", "Enable", "Install", "Invoke",
        "Register", "Request", "Restart", "Resume", "Start", "Stop", "Submit", "Suspend", "Uninstall", "Unregister", "Wait",
        // Security
        "Block", "Grant", "Protect", "Revoke", "Unblock", "Unprotect",
        // Other
        "Use",
    };

    private const string NameVm = "Name,Vm";

    /// <summary>
    /// The design: parameter sets (sorted, comma-joined), SupportsShouldProcess, ConfirmImpact, and the parameter
    /// bound ByValue from the pipeline (null = none).
    /// </summary>
    public static readonly TheoryData<string, string, bool, string, string?> Design = new()
    {
        { "New-KvmVm", "Definition,Parameters", true, "Medium", "Definition" },
        { "Get-KvmVm", "Name", false, "Medium", "Name" },
        { "Start-KvmVm", NameVm, true, "Medium", "Vm" },
        { "Stop-KvmVm", NameVm, true, "Medium", "Vm" },
        { "Restart-KvmVm", NameVm, true, "Medium", "Vm" },
        { "Suspend-KvmVm", NameVm, true, "Medium", "Vm" },
        { "Resume-KvmVm", NameVm, true, "Medium", "Vm" },
        { "Remove-KvmVm", NameVm, true, "High", "Vm" },
        { "Set-KvmVm", NameVm, true, "Medium", "Vm" },
        { "Set-KvmVcpu", NameVm, true, "Medium", "Vm" },
        { "Set-KvmMemory", NameVm, true, "Medium", "Vm" },
        { "Invoke-KvmBalloon", NameVm, true, "Medium", "Vm" },
        { "Add-KvmDisk", NameVm, true, "Medium", "Vm" },
        { "Remove-KvmDisk", NameVm, true, "Medium", "Vm" },
        { "Add-KvmNetworkAdapter", NameVm, true, "Medium", "Vm" },
        { "Remove-KvmNetworkAdapter", NameVm, true, "Medium", "Vm" },
        { "Add-KvmPciPassthrough", NameVm, true, "Medium", "Vm" },
        { "Remove-KvmPciPassthrough", NameVm, true, "Medium", "Vm" },
        { "Get-KvmHostPciDevice", "Address", false, "Medium", null },
        { "Set-KvmHostSriov", "", true, "Medium", null },
        { "New-KvmDiskImage", "", true, "Medium", null },
        { "Get-KvmConsoleLog", NameVm, false, "Medium", "Vm" },
        { "Connect-KvmConsole", NameVm, false, "Medium", "Vm" },
        { "Get-KvmDesiredState", "", false, "Medium", "Path" },
        { "Test-KvmDesiredState", "", false, "Medium", "Path" },
        { "Invoke-KvmDesiredState", "", true, "Medium", "Path" },
        { "Export-KvmDesiredState", "", true, "Medium", "Name" },
        { "Checkpoint-KvmVm", NameVm, true, "Low", "Vm" },
        { "Get-KvmVmSnapshot", "VMName,Vm", false, "Medium", "Vm" },
        { "Restore-KvmVmSnapshot", "Name,Snapshot", true, "High", "VMSnapshot" },
        { "Remove-KvmVmSnapshot", "Name,Snapshot", true, "Medium", "VMSnapshot" },
        { "Save-KvmVm", NameVm, true, "Medium", "Vm" },
        { "Export-KvmVm", NameVm, true, "Low", "Vm" },
        { "Import-KvmVm", "", true, "Medium", "Path" },
        { "Update-KvmVmm", NameVm, true, "Medium", "Vm" },
        { "New-KvmStoragePool", "", true, "Medium", null },
        { "Get-KvmStoragePool", "", false, "Medium", null },
        { "Remove-KvmStoragePool", "", true, "Medium", null },
        { "Get-KvmVolume", "", false, "Medium", null },
        { "New-KvmVolume", "", true, "Medium", null },
        { "Remove-KvmVolume", "", true, "High", null },
        { "Move-KvmVm", NameVm, true, "Medium", "Vm" },
        { "New-KvmNetwork", "", true, "Medium", null },
        { "Get-KvmNetwork", "", false, "Medium", null },
        { "Set-KvmNetwork", "", true, "Medium", null },
        { "Remove-KvmNetwork", "", true, "High", null },
        { "Start-KvmNetwork", "", true, "Medium", null },
        { "Stop-KvmNetwork", "", true, "Medium", null },
        { "Get-KvmVmNetworkAdapter", NameVm, false, "Medium", "Vm" },
        { "Add-KvmDvdDrive", NameVm, true, "Low", "Vm" },
        { "Get-KvmDvdDrive", NameVm, false, "Medium", "Vm" },
        { "Set-KvmDvdDrive", NameVm, true, "Medium", "Vm" },
        { "Remove-KvmDvdDrive", NameVm, true, "Medium", "Vm" },
        { "Get-KvmFirmware", NameVm, false, "Medium", "Vm" },
        { "Set-KvmFirmware", NameVm, true, "Low", "Vm" },
        { "Get-KvmVmScreenshot", NameVm, true, "Low", "Vm" },
    };

    /// <summary>Cmdlets whose -Name may be left out: they then act on every VM it could name (Update-KvmVmm: every running VM).</summary>
    private static readonly HashSet<string> NameOptional = new(StringComparer.Ordinal) { "Update-KvmVmm" };

    /// <summary>Cmdlets whose -Name names a checkpoint (as Hyper-V's Get-VMSnapshot): piped VMs must not bind their Name to it.</summary>
    private static readonly HashSet<string> CheckpointNameNotFromPipeline = new(StringComparer.Ordinal) { "Get-KvmVmSnapshot" };

    private static readonly IReadOnlyList<CmdletData> Cmdlets = CmdletMetadata.FromAssembly(Repo.Module);

    private static CmdletData Cmdlet(string name) => Cmdlets.Single(c => c.Name == name);

    [Fact]
    public void The_assembly_has_exactly_the_designed_cmdlets()
    {
        var designed = Design.Select(row => (string)row[0]).Order(StringComparer.Ordinal);
        Assert.Equal(designed, Cmdlets.Select(c => c.Name).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Every_verb_is_approved_and_every_noun_is_prefixed()
    {
        foreach (var cmdlet in Cmdlets)
        {
            Assert.True(ApprovedVerbs.Contains(cmdlet.Verb), $"{cmdlet.Name}: '{cmdlet.Verb}' is not an approved verb");
            Assert.StartsWith("Kvm", cmdlet.Noun);
            Assert.Equal("KvmPS.Commands", cmdlet.Type.Namespace);
            Assert.Equal(cmdlet.Verb + cmdlet.Noun + "Command", cmdlet.Type.Name);
        }
    }

    [Theory]
    [MemberData(nameof(Design))]
    public void Cmdlet_is_as_designed(string name, string sets, bool shouldProcess, string confirmImpact, string? byValue)
    {
        var cmdlet = Cmdlet(name);
        var actualSets = cmdlet.Parameters.SelectMany(p => p.Sets).Select(s => s.SetName).Where(s => s != CmdletMetadata.AllSets)
            .Distinct().Order(StringComparer.Ordinal);
        Assert.Equal(sets, string.Join(",", actualSets));
        Assert.Equal(shouldProcess, cmdlet.SupportsShouldProcess);
        Assert.Equal(confirmImpact, cmdlet.ConfirmImpact);
        var pipelineByValue = cmdlet.Parameters.Where(p => p.Sets.Any(s => s.ValueFromPipeline)).Select(p => p.Name).ToList();
        Assert.Equal(byValue is null ? Array.Empty<string>() : new[] { byValue }, pipelineByValue);
        Assert.NotEmpty(cmdlet.OutputTypes);
        if (sets.Length > 0)
            Assert.Contains(cmdlet.DefaultParameterSetName, sets.Split(','));
    }

    [Theory]
    [MemberData(nameof(Design))]
    public void Name_and_Vm_parameters_follow_the_convention(string name, string sets, bool shouldProcess, string confirmImpact, string? byValue)
    {
        _ = (shouldProcess, confirmImpact, byValue);
        var cmdlet = Cmdlet(name);
        var nameParameter = cmdlet.Parameters.SingleOrDefault(p => p.Name == "Name");
        if (sets == NameVm)
        {
            Assert.NotNull(nameParameter);
            Assert.Equal(typeof(string[]), nameParameter!.Type);
            var set = Assert.Single(nameParameter.Sets);
            Assert.Equal(("Name", !NameOptional.Contains(name), 0, false, true), (set.SetName, set.Mandatory, set.Position, set.ValueFromPipeline, set.ValueFromPipelineByPropertyName));
            Assert.True(nameParameter.SupportsWildcards);

            var vm = cmdlet.Parameters.Single(p => p.Name == "Vm");
            Assert.Equal(typeof(KvmVm[]), vm.Type);
            var vmSet = Assert.Single(vm.Sets);
            Assert.Equal(("Vm", true, 0, true), (vmSet.SetName, vmSet.Mandatory, vmSet.Position, vmSet.ValueFromPipeline));
        }
        if (nameParameter is not null)
        {
            Assert.True(nameParameter.HasArgumentCompleter, $"{name} -Name has no VM name completer");
            if (!CheckpointNameNotFromPipeline.Contains(name))
                Assert.True(nameParameter.Sets.All(s => s.ValueFromPipelineByPropertyName), $"{name} -Name must bind by property name");
        }
    }

    [Fact]
    public void Long_operations_offer_AsJob_and_state_changes_offer_PassThru()
    {
        foreach (var name in new[] { "New-KvmVm", "Start-KvmVm", "Stop-KvmVm", "Restart-KvmVm" })
            Assert.Contains(Cmdlet(name).Parameters, p => p.Name == "AsJob");
        foreach (var name in new[] { "Start-KvmVm", "Stop-KvmVm", "Restart-KvmVm", "Suspend-KvmVm", "Resume-KvmVm", "Remove-KvmVm", "Set-KvmVm", "Set-KvmVcpu", "Set-KvmMemory",
                     "Checkpoint-KvmVm", "Restore-KvmVmSnapshot", "Remove-KvmVmSnapshot", "Save-KvmVm", "Export-KvmVm",
                     "Add-KvmDisk", "Remove-KvmDisk", "Add-KvmNetworkAdapter", "Remove-KvmNetworkAdapter", "Add-KvmPciPassthrough", "Remove-KvmPciPassthrough",
                     "Set-KvmNetwork", "Remove-KvmNetwork", "Start-KvmNetwork", "Stop-KvmNetwork",
                     "Add-KvmDvdDrive", "Set-KvmDvdDrive", "Remove-KvmDvdDrive", "Set-KvmFirmware", "Get-KvmVmScreenshot", "Set-KvmHostSriov" })
            Assert.Contains(Cmdlet(name).Parameters, p => p.Name == "PassThru");
        foreach (var name in new[] { "Set-KvmVm", "Set-KvmVcpu", "Set-KvmMemory", "Invoke-KvmBalloon", "Add-KvmPciPassthrough" })
            Assert.Contains(Cmdlet(name).Parameters, p => p.Name == "RestartIfNeeded");
    }

    [Fact]
    public void Hyper_V_parameter_names_are_used_where_the_concept_matches()
    {
        var newVm = Cmdlet("New-KvmVm").Parameters.Select(p => p.Name).ToList();
        Assert.Contains("MemoryStartupBytes", newVm);
        Assert.Contains("MemoryMinimumBytes", newVm);
        Assert.Contains("MemoryMaximumBytes", newVm);
        Assert.Contains("ProcessorCount", newVm);
        Assert.Contains(Cmdlet("Set-KvmVcpu").Parameters, p => p.Name == "Count");
        Assert.Contains(Cmdlet("Set-KvmVcpu").Parameters, p => p.Name == "Maximum");
        foreach (var parameter in new[] { "StartupBytes", "MinimumBytes", "MaximumBytes" }) // Set-VMMemory's
            Assert.Contains(Cmdlet("Set-KvmMemory").Parameters, p => p.Name == parameter);
        Assert.Contains(Cmdlet("Stop-KvmVm").Parameters, p => p.Name == "Force"); // Stop-VM's, next to -TurnOff
        Assert.Contains(Cmdlet("Invoke-KvmBalloon").Parameters, p => p.Name == "TargetBytes");
        Assert.Contains(Cmdlet("Get-KvmConsoleLog").Parameters, p => p.Name == "Tail");
        Assert.Contains(Cmdlet("Checkpoint-KvmVm").Parameters, p => p.Name == "SnapshotName");
        Assert.Contains(Cmdlet("Remove-KvmVmSnapshot").Parameters, p => p.Name == "IncludeAllChildSnapshots");
        Assert.Contains(Cmdlet("Import-KvmVm").Parameters, p => p.Name == "GenerateNewId");
        foreach (var name in new[] { "Restore-KvmVmSnapshot", "Remove-KvmVmSnapshot", "Get-KvmVmSnapshot" })
            Assert.Contains(Cmdlet(name).Parameters, p => p.Name == "VMName");
    }

    [Fact]
    public void Manifest_exports_exactly_the_cmdlets_and_nothing_else()
    {
        var manifest = PsdReader.ReadDataFile(Repo.Manifest);
        string[] Strings(string key) => ((PsdArray)manifest[key]).Items.Select(i => ((PsdString)i).Value).ToArray();

        Assert.Equal(Cmdlets.Select(c => c.Name).Order(StringComparer.Ordinal), Strings("CmdletsToExport").Order(StringComparer.Ordinal));
        Assert.DoesNotContain(Strings("CmdletsToExport"), n => n.Contains('*'));
        Assert.Empty(Strings("FunctionsToExport"));
        Assert.Empty(Strings("AliasesToExport"));
        Assert.Empty(Strings("VariablesToExport"));
        Assert.Equal("KvmPS.dll", ((PsdString)manifest["RootModule"]).Value);
        Assert.Equal(new[] { "Core" }, Strings("CompatiblePSEditions"));
        Assert.Equal("7.4", ((PsdString)manifest["PowerShellVersion"]).Value);
        Assert.Equal(new[] { "KvmPS.Format.ps1xml" }, Strings("FormatsToProcess"));
        Assert.True(Guid.TryParse(((PsdString)manifest["GUID"]).Value, out _));
        Assert.False(string.IsNullOrWhiteSpace(((PsdString)manifest["Description"]).Value));
        var psData = (PsdHashtable)((PsdHashtable)manifest["PrivateData"])["PSData"];
        Assert.NotEmpty(((PsdArray)psData["Tags"]).Items);
    }

    public static TheoryData<string> CmdletNames()
    {
        var data = new TheoryData<string>();
        foreach (var row in Design)
            data.Add((string)row[0]);
        return data;
    }

    [Theory]
    [MemberData(nameof(CmdletNames))]
    public void Help_page_matches_the_cmdlet(string name)
    {
        var path = Path.Combine(Repo.Docs, name + ".md");
        Assert.True(File.Exists(path), $"missing help page {path}");
        var page = MarkdownReader.ReadFile(path);
        var cmdlet = Cmdlet(name);

        Assert.Equal(name, page.Name);
        Assert.Equal("KvmPS.dll-Help.xml", page.Metadata["external help file"]);
        Assert.Equal("KvmPS", page.Metadata["Module Name"]);
        Assert.Equal("2.0.0", page.Metadata["schema"]);
        Assert.True(page.Metadata.ContainsKey("online version"));

        var expected = cmdlet.Parameters.Select(p => p.Name).ToList();
        if (cmdlet.SupportsShouldProcess)
            expected.AddRange(new[] { "WhatIf", "Confirm" });
        Assert.Equal(expected.Order(StringComparer.Ordinal), page.Parameters.Select(p => p.Name).Order(StringComparer.Ordinal));
        Assert.True(page.CommonParameters, "### CommonParameters is missing");

        // SYNTAX: one block per parameter set, each naming exactly that set's parameters.
        var sets = cmdlet.Parameters.SelectMany(p => p.Sets).Select(s => s.SetName).Where(s => s != CmdletMetadata.AllSets).Distinct().ToList();
        Assert.Equal(Math.Max(1, sets.Count), page.Syntax.Count);
        foreach (var block in page.Syntax)
        {
            var set = block.ParameterSetName ?? CmdletMetadata.AllSets;
            Assert.StartsWith(name + " ", block.Text);
            var inSet = cmdlet.Parameters.Where(p => p.Sets.Any(s => s.SetName == set || s.SetName == CmdletMetadata.AllSets)).Select(p => p.Name).ToList();
            if (cmdlet.SupportsShouldProcess)
                inSet.AddRange(new[] { "WhatIf", "Confirm" });
            var named = System.Text.RegularExpressions.Regex.Matches(block.Text, @"(?<=[\s\[])-(\w+)").Select(m => m.Groups[1].Value).ToList();
            Assert.Equal(inSet.Order(StringComparer.Ordinal), named.Order(StringComparer.Ordinal));
            Assert.Equal(block.ParameterSetName is not null && block.ParameterSetName == cmdlet.DefaultParameterSetName, block.IsDefault);
        }

        Assert.True(page.Examples.Count >= 2, $"{name} has {page.Examples.Count} examples; at least 2 are required");
        Assert.All(page.Examples, e => Assert.Contains(name, e.Code));
        Assert.All(page.Examples, e => Assert.False(string.IsNullOrWhiteSpace(e.Remarks), $"{name} '{e.Title}' has no explanation"));
        Assert.False(string.IsNullOrWhiteSpace(page.Synopsis));
        Assert.False(string.IsNullOrWhiteSpace(page.Description));
        Assert.All(page.Parameters, p => Assert.False(string.IsNullOrWhiteSpace(p.Description), $"{name} -{p.Name} has no description"));
        Assert.NotEmpty(page.Outputs);
        Assert.DoesNotContain("{{", File.ReadAllText(path));
    }

    [Fact]
    public void About_topic_exists()
    {
        var text = File.ReadAllText(Path.Combine(Repo.Docs, "about_KvmPS.md"));
        Assert.Contains("about_KvmPS", text);
        foreach (var section in new[] { "## SHORT DESCRIPTION", "## LONG DESCRIPTION", "## EXAMPLES" })
            Assert.Contains(section, text);
    }

    [Fact]
    public void Generated_MAML_is_well_formed_and_lists_every_cmdlet()
    {
        var pages = HelpPages.CommandPages(Repo.Docs).Select(MarkdownReader.ReadFile).ToList();
        var xml = MamlWriter.Write(pages);
        CheckMaml(XDocument.Parse(xml));

        // The copy the build put next to KvmPS.dll (en-US/KvmPS.dll-Help.xml), when the build produced one here.
        var built = Path.Combine(Path.GetDirectoryName(Repo.Module.Location)!, "en-US", "KvmPS.dll-Help.xml");
        if (File.Exists(built))
            CheckMaml(XDocument.Load(built));
    }

    private static void CheckMaml(XDocument document)
    {
        XNamespace command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
        XNamespace maml = "http://schemas.microsoft.com/maml/2004/10";
        XNamespace dev = "http://schemas.microsoft.com/maml/dev/2004/10";
        Assert.Equal("helpItems", document.Root!.Name.LocalName);
        var commands = document.Root.Elements(command + "command").ToList();
        var names = commands.Select(c => c.Element(command + "details")!.Element(command + "name")!.Value).Order(StringComparer.Ordinal);
        Assert.Equal(Cmdlets.Select(c => c.Name).Order(StringComparer.Ordinal), names);
        foreach (var c in commands)
        {
            var name = c.Element(command + "details")!.Element(command + "name")!.Value;
            Assert.True(c.Element(command + "examples")!.Elements(command + "example").Count() >= 2, name);
            Assert.All(c.Element(command + "examples")!.Elements(command + "example"), e => Assert.Contains(name, e.Element(dev + "code")!.Value));
            Assert.NotEmpty(c.Element(command + "syntax")!.Elements(command + "syntaxItem"));
            var synopsis = c.Element(command + "details")!.Element(maml + "description")!.Value;
            Assert.False(string.IsNullOrWhiteSpace(synopsis), name);
            var documented = c.Element(command + "parameters")!.Elements(command + "parameter").Select(p => p.Element(maml + "name")!.Value).ToList();
            Assert.Equal(Cmdlet(name).Parameters.Select(p => p.Name).Order(), documented.Where(p => p is not "WhatIf" and not "Confirm").Order());
        }
    }

    [Fact]
    public void Format_file_has_the_views()
    {
        var path = Path.Combine(Repo.Root, "src", "KvmPS.PowerShell", "KvmPS.Format.ps1xml");
        var document = XDocument.Load(path);
        var views = document.Descendants("View").Select(v => (Type: v.Element("ViewSelectedBy")!.Element("TypeName")!.Value,
            Kind: v.Elements().Select(e => e.Name.LocalName).First(n => n.EndsWith("Control", StringComparison.Ordinal)))).ToList();
        Assert.Contains((typeof(KvmVm).FullName!, "TableControl"), views);
        Assert.Contains((typeof(KvmVm).FullName!, "ListControl"), views);
        Assert.Contains((typeof(KvmVmSnapshot).FullName!, "TableControl"), views);
        Assert.Contains((typeof(KvmVmSnapshot).FullName!, "ListControl"), views);
        Assert.Contains((typeof(KvmPS.Management.HostDevices.PciHostDevice).FullName!, "TableControl"), views);
        Assert.Contains((typeof(KvmPS.Management.HostDevices.PciHostDevice).FullName!, "ListControl"), views);
        var vmTable = document.Descendants("View").First(v => v.Element("ViewSelectedBy")!.Element("TypeName")!.Value == typeof(KvmVm).FullName && v.Element("TableControl") is not null);
        var labels = vmTable.Descendants("TableColumnHeader").Select(h => h.Element("Label")!.Value).ToList();
        Assert.Equal(new[] { "Name", "State", "CPUs", "MemoryMB", "Uptime" }, labels.Take(5));
        // Every property a view names exists on its type.
        foreach (var view in document.Descendants("View"))
        {
            var type = Type.GetType(view.Element("ViewSelectedBy")!.Element("TypeName")!.Value + ", " +
                (view.Element("ViewSelectedBy")!.Element("TypeName")!.Value.StartsWith("KvmPS.PowerShell", StringComparison.Ordinal) ? "KvmPS" : "KvmPS.Management"))!;
            Assert.NotNull(type);
            foreach (var property in view.Descendants("PropertyName").Select(p => p.Value))
                Assert.True(type.GetProperty(property) is not null, $"{type.Name} has no property {property}");
        }
    }
}
