using System.Management.Automation;
using KvmPS.Management.Vmm;

namespace KvmPS.PowerShell;

/// <summary>
/// Runs when pwsh imports the module. The installed module package carries kvmps-vmm and kvmps in bin/ without
/// execute bits (zip entries have none), so they are made executable here, once, before any cmdlet or the DSC
/// resource runs them.
/// </summary>
public sealed class ModuleInitializer : IModuleAssemblyInitializer
{
    public void OnImport()
    {
#pragma warning disable IL3000
        var moduleDirectory = Path.GetDirectoryName(typeof(ModuleInitializer).Assembly.Location);
#pragma warning restore IL3000
        if (string.IsNullOrEmpty(moduleDirectory))
            return;
        foreach (var program in new[] { VmmProcessLauncher.BinaryName, "kvmps" })
        {
            var path = Path.Combine(moduleDirectory, "bin", program);
            if (File.Exists(path))
                ExecutableFile.TryMakeExecutable(path);
        }
    }
}
