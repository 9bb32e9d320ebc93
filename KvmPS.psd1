@{
    RootModule             = 'KvmPS.dll'
    ModuleVersion          = '0.1.0'
    CompatiblePSEditions   = @('Core')
    GUID                   = '35cb16b9-e29c-4856-8ece-e7eaaf4338d4'
    Author                 = 'KvmPS contributors'
    CompanyName            = 'KvmPS'
    Copyright              = '(c) KvmPS contributors. All rights reserved.'
    Description            = 'Declarative virtual-machine provisioning on Linux KVM: create, start, stop, resize and wire up VMs that run on the KvmPS VMM (kvmps-vmm), from PowerShell.'
    PowerShellVersion      = '7.4'
    FormatsToProcess       = @('KvmPS.Format.ps1xml')
    CmdletsToExport        = @(
        'New-KvmVm'
        'Get-KvmVm'
        'Start-KvmVm'
        'Stop-KvmVm'
        'Restart-KvmVm'
        'Suspend-KvmVm'
        'Resume-KvmVm'
        'Remove-KvmVm'
        'Set-KvmVm'
        'Set-KvmVcpu'
        'Set-KvmMemory'
        'Invoke-KvmBalloon'
        'Add-KvmDisk'
        'Remove-KvmDisk'
        'Add-KvmNetworkAdapter'
        'Remove-KvmNetworkAdapter'
        'Add-KvmPciPassthrough'
        'Remove-KvmPciPassthrough'
        'Get-KvmHostPciDevice'
        'Set-KvmHostSriov'
        'New-KvmDiskImage'
        'Get-KvmConsoleLog'
        'Connect-KvmConsole'
        'Get-KvmDesiredState'
        'Export-KvmDesiredState'
        'Test-KvmDesiredState'
        'Invoke-KvmDesiredState'
        'Checkpoint-KvmVm'
        'Get-KvmVmSnapshot'
        'Restore-KvmVmSnapshot'
        'Remove-KvmVmSnapshot'
        'Save-KvmVm'
        'Export-KvmVm'
        'Import-KvmVm'
        'Update-KvmVmm'
        'New-KvmStoragePool'
        'Get-KvmStoragePool'
        'Remove-KvmStoragePool'
        'Get-KvmVolume'
        'New-KvmVolume'
        'Remove-KvmVolume'
        'Move-KvmVm'
        'New-KvmNetwork'
        'Get-KvmNetwork'
        'Set-KvmNetwork'
        'Remove-KvmNetwork'
        'Start-KvmNetwork'
        'Stop-KvmNetwork'
        'Get-KvmVmNetworkAdapter'
        'Add-KvmDvdDrive'
        'Get-KvmDvdDrive'
        'Set-KvmDvdDrive'
        'Remove-KvmDvdDrive'
        'Get-KvmFirmware'
        'Set-KvmFirmware'
        'Get-KvmVmScreenshot'
    )
    NestedModules          = @('DscResources/KvmVm.psm1')
    DscResourcesToExport   = @('KvmVm')
    FunctionsToExport      = @()
    AliasesToExport        = @()
    VariablesToExport      = @()
    PrivateData            = @{
        PSData = @{
            Tags         = @('KVM', 'Linux', 'VirtualMachine', 'Virtualization', 'Hypervisor', 'VMM', 'DSC', 'PSEdition_Core')
            ProjectUri   = ''
            ReleaseNotes = 'First release: VM lifecycle, vCPU and memory settings, disks, network adapters, PCI passthrough, disk images, the serial console, and desired state from .psd1 manifests (cmdlets and the KvmVm DSC resource).'
        }
    }
}
