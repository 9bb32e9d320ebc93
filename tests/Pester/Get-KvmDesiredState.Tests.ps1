#Requires -Version 7.4
# Get-KvmDesiredState: per-VM status (wanted vs actual), unmanaged VMs, readable views at 80 columns, errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:host1 = New-KvmTestManifest 'host.psd1' @'
@{
    Defaults        = @{ MemoryStartupBytes = 64MB; State = 'Running' }
    VirtualMachines = @(
        @{ Name = 'gds-web'; VcpuCount = 2 }
        @{ Name = 'gds-db'; Notes = 'db' }
    )
}
'@

    # The drift of one status object (named Drift or Drifts), as "Property" strings.
    function Get-DriftProperty($Status) {
        $property = $Status.PSObject.Properties | Where-Object Name -in 'Drift', 'Drifts' | Select-Object -First 1
        @($property.Value | ForEach-Object Property)
    }
}

AfterAll { Complete-KvmTest }

Describe 'Get-KvmDesiredState' {
    It 'reports each VM of the manifest as missing before it exists' {
        $status = @(Get-KvmDesiredState -Path $host1)
        $status.Count | Should -Be 2
        $status.Name | Should -Be @('gds-web', 'gds-db')
        $status | ForEach-Object { $_.Exists | Should -BeFalse; $_.InDesiredState | Should -BeFalse }
        Get-DriftProperty $status[0] | Should -Be @('Ensure')
    }

    It 'shows status without record dumps, in 80 columns (VM missing)' -Tag 'Issue9' {
        Assert-KvmView @(Get-KvmDesiredState -Path $host1) -View Default | Out-Null
    }

    It 'reports the VMs in the desired state after Invoke-KvmDesiredState' {
        Invoke-KvmDesiredState -Path $host1 -Confirm:$false | Out-Null
        $status = @(Get-KvmDesiredState -Path $host1)
        $status | ForEach-Object { $_.Exists | Should -BeTrue; $_.InDesiredState | Should -BeTrue }
        Get-DriftProperty $status[0] | Should -BeNullOrEmpty
        Test-KvmDesiredState -Path $host1 | Should -BeTrue
    }

    It 'shows status without record dumps, in 80 columns (VMs running), as a table and a list' -Tag 'Issue9' {
        $status = @(Get-KvmDesiredState -Path $host1)
        $lines = Assert-KvmView $status -View Default
        ($lines -match 'gds-web') | Should -Not -BeNullOrEmpty
        Assert-KvmView $status -View Table | Out-Null
        Assert-KvmView $status -View List | Out-Null
    }

    It 'reports drift on a VM changed by hand' {
        Stop-KvmVm gds-db -TurnOff
        $db = Get-KvmDesiredState -Path $host1 | Where-Object Name -eq 'gds-db'
        $db.InDesiredState | Should -BeFalse
        Get-DriftProperty $db | Should -Be @('State')
        Start-KvmVm gds-db
    }

    It 'takes manifests from Get-ChildItem by FullName' {
        $status = @(Get-ChildItem -LiteralPath $host1 | Get-KvmDesiredState)
        $status.Count | Should -Be 2
    }

    It 'outputs the VMs no manifest names as KvmVm objects with -IncludeUnmanaged' {
        New-KvmTestVm -Name gds-other | Out-Null
        $all = @(Get-KvmDesiredState -Path $host1 -IncludeUnmanaged)
        $all.Count | Should -Be 3
        ($all | Where-Object { $_ -is [KvmPS.PowerShell.KvmVm] }).Name | Should -Be 'gds-other'
        $verbose = Get-KvmDesiredState -Path $host1 -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        "$verbose" | Should -Match 'gds-other'
        Remove-KvmVm gds-other -Force -Confirm:$false
    }

    It 'Format-List * shows no management record dumps' -Tag 'Issue9' {
        $text = Get-KvmDesiredState -Path $host1 | Format-List * | Out-String -Width 80
        $text | Should -Match '(?m)^Name\s+: gds-web'
        $text | Should -Not -Match 'DesiredVmStatus \{|DesiredVm \{|VmInfo \{|VmDefinition \{'
    }

    It 'reports a malformed manifest at file:line:column' {
        $bad = New-KvmTestManifest 'bad.psd1' "@{ Name = 'gds-bad'; MemoryStartupBytes = 'lots' }"
        Get-KvmDesiredState -Path $bad -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidManifest,KvmPS.Commands.GetKvmDesiredStateCommand'
        $err[0].CategoryInfo.Category | Should -Be 'ParserError'
        "$($err[0])" | Should -Match ([regex]::Escape($bad) + ":1:\d+: VM 'gds-bad': MemoryStartupBytes")
    }

    It 'reports the storage pools of the manifest first, with their drift, in 80 columns' {
        $folder = Join-Path $env:KVMPS_HOME 'gds-pool-folder'
        $withPool = New-KvmTestManifest 'pool.psd1' @"
@{
    StoragePools    = @( @{ Name = 'gdspool'; Path = '$folder'; Autostart = `$true } )
    VirtualMachines = @( @{ Name = 'gds-web'; VcpuCount = 2; MemoryStartupBytes = 64MB; State = 'Running' } )
}
"@
        $before = @(Get-KvmDesiredState -Path $withPool)
        $before[0] | Should -BeOfType ([KvmPS.PowerShell.KvmDesiredHostResource])
        $before[0].Kind | Should -Be 'StoragePool'
        $before[0].Name | Should -Be 'gdspool'
        $before[0].Exists | Should -BeFalse
        $before[0].InDesiredState | Should -BeFalse
        $before[0].Manifest | Should -Match ([regex]::Escape($withPool) + ':2:')
        $before[1].Name | Should -Be 'gds-web'
        Assert-KvmView $before -View Default | Out-Null

        Invoke-KvmDesiredState -Path $withPool -Confirm:$false | Out-Null
        $after = @(Get-KvmDesiredState -Path $withPool)
        $after[0].Exists | Should -BeTrue
        $after[0].InDesiredState | Should -BeTrue -Because ($after[0].Drifts -join '; ')

        # Damage by hand: the pool's folder removed is drift on the pool, not on the VM.
        Remove-Item -LiteralPath $folder -Recurse -Force
        $damaged = @(Get-KvmDesiredState -Path $withPool)
        $damaged[0].InDesiredState | Should -BeFalse
        @($damaged[0].Drifts).Count | Should -BeGreaterThan 0
        Remove-KvmStoragePool -Name gdspool -Confirm:$false -ErrorAction SilentlyContinue
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmDesiredState | Out-Null
    }
}
