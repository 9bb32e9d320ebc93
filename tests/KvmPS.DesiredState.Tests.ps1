#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0' }
<#
    Pester 5 tests of the desired-state cmdlets (Get-, Test-, Invoke-KvmDesiredState) and the KvmVm DSC
    resource class, against the published module (out/KvmPS), run by `./build.ps1 -Task Pester`.
    Each run uses its own temporary store ($env:KVMPS_HOME). The VM tests need /dev/kvm and kvmps-vmm.
#>

BeforeDiscovery {
    $script:repoRoot = Split-Path -Parent $PSScriptRoot
    $vmm = if ($env:KVMPS_VMM) { $env:KVMPS_VMM } else { Join-Path $repoRoot 'out/bin/kvmps-vmm' }
    $script:canRunVms = (Test-Path /dev/kvm) -and (Test-Path $vmm)
    $script:cli = if ($env:KVMPS_CLI) { $env:KVMPS_CLI } else { Join-Path $repoRoot 'out/bin/kvmps' }
    $script:hasCli = Test-Path $cli
    $script:dscModule = Join-Path $repoRoot 'src/KvmPS.PowerShell/DscResources/KvmVm.psm1'
}

BeforeAll {
    $repoRoot = Split-Path -Parent $PSScriptRoot
    if (-not $env:KVMPS_VMM) { $env:KVMPS_VMM = Join-Path $repoRoot 'out/bin/kvmps-vmm' }
    if (-not $env:KVMPS_CLI) { $env:KVMPS_CLI = Join-Path $repoRoot 'out/bin/kvmps' }
    $script:savedHome = $env:KVMPS_HOME
    # Short path: the control socket path must fit in 107 bytes.
    $script:storeRoot = Join-Path ([IO.Path]::GetTempPath()) ('kds-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    $env:KVMPS_HOME = $storeRoot
    $script:manifestDir = Join-Path $storeRoot 'manifests'
    New-Item -ItemType Directory -Path $manifestDir -Force | Out-Null
    Import-Module (Join-Path $repoRoot 'out/KvmPS/KvmPS.psd1') -Force -ErrorAction Stop

    function New-TestManifest([string] $FileName, [string] $Text) {
        $path = Join-Path $script:manifestDir $FileName
        Set-Content -LiteralPath $path -Value $Text -Encoding utf8NoBOM
        return $path
    }
}

AfterAll {
    Get-KvmVm -ErrorAction SilentlyContinue | Remove-KvmVm -Force -Confirm:$false -ErrorAction SilentlyContinue
    Remove-Module KvmPS -Force -ErrorAction SilentlyContinue
    $env:KVMPS_HOME = $script:savedHome
    Remove-Item -Recurse -Force $script:storeRoot -ErrorAction SilentlyContinue
}

Describe 'Desired-state cmdlets: manifest errors' {
    It 'reports a schema error with file:line:column and changes nothing' {
        $bad = New-TestManifest 'bad.psd1' "@{ VirtualMachines = @(`n  @{ Name = 'pbad'; MemoryStartupBytes = 64MB; Vcpus = 2 }`n) }"
        $result = Test-KvmDesiredState -Path $bad -ErrorVariable err -ErrorAction SilentlyContinue
        $result | Should -BeNullOrEmpty
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidManifest,*'
        $err[0].Exception.Message | Should -BeLike "$bad`:2:48: VM 'pbad': Vcpus: unknown key 'Vcpus'*"
        Get-KvmVm -Name 'pbad' -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'reports a VM defined in two files' {
        $a = New-TestManifest 'dup-a.psd1' "@{ Name = 'pdup'; MemoryStartupBytes = 64MB }"
        $b = New-TestManifest 'dup-b.psd1' "@{ Name = 'pdup'; MemoryStartupBytes = 64MB }"
        Invoke-KvmDesiredState -Path $a, $b -ErrorVariable err -ErrorAction SilentlyContinue -Confirm:$false
        $err[0].Exception.Message | Should -BeLike "*VM 'pdup': Name: the VM is defined twice (first at $a`:1:1)"
        Remove-Item $a, $b
    }

    It 'reports a missing manifest file' {
        $missing = Join-Path $script:manifestDir 'missing.psd1'
        Test-KvmDesiredState -Path $missing -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].Exception.Message | Should -Be "$missing`: the manifest file does not exist"
    }

    AfterAll { Remove-Item (Join-Path $script:manifestDir 'bad.psd1') -ErrorAction SilentlyContinue }
}

Describe 'Desired-state cmdlets on real VMs' -Skip:(-not $canRunVms) {
    BeforeAll {
        $script:host1 = New-TestManifest 'host.psd1' @'
@{
    Defaults        = @{ MemoryStartupBytes = 64MB; State = 'Running' }
    VirtualMachines = @(
        @{ Name = 'pds-web'; VcpuCount = 2 }
        @{ Name = 'pds-db'; Notes = 'db' }
    )
}
'@
    }

    It 'Test-KvmDesiredState is $false before anything exists, with Ensure drift per VM' {
        Test-KvmDesiredState -Path $host1 | Should -BeFalse
        $drift = Test-KvmDesiredState -Path $host1 -Detailed
        $drift.Count | Should -Be 2
        $drift[0].VmName | Should -Be 'pds-web'
        $drift[0].Property | Should -Be 'Ensure'
        $drift[0].Expected | Should -Be 'Present'
        $drift[0].Actual | Should -Be 'Absent'
    }

    It 'Invoke-KvmDesiredState -WhatIf changes nothing' {
        Invoke-KvmDesiredState -Path $host1 -WhatIf
        Get-KvmVm -Name 'pds-*' | Should -BeNullOrEmpty
    }

    It 'Invoke-KvmDesiredState creates and starts the VMs and reports each step' {
        $results = Invoke-KvmDesiredState -Path $host1 -Confirm:$false
        $results.Count | Should -Be 4
        ($results | ForEach-Object { $_.Status.ToString() } | Sort-Object -Unique) | Should -Be 'Done'
        ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('Create', 'Create', 'Start', 'Start')
        (Get-KvmVm -Name 'pds-web').State.ToString() | Should -Be 'Running'
        (Get-KvmVm -Name 'pds-web').ProcessorCount | Should -Be 2
    }

    It 'is idempotent: a second run does nothing and the host tests $true' {
        Invoke-KvmDesiredState -Path $host1 -Confirm:$false | Should -BeNullOrEmpty
        Test-KvmDesiredState -Path $host1 | Should -BeTrue
        Test-KvmDesiredState -Path $host1 -Detailed | Should -BeNullOrEmpty
    }

    It 'takes manifests from Get-ChildItem by FullName' {
        Get-ChildItem -Path $script:manifestDir -Filter 'host.psd1' | Test-KvmDesiredState | Should -BeTrue
        $status = Get-ChildItem -Path $script:manifestDir -Filter 'host.psd1' | Get-KvmDesiredState
        $status.Count | Should -Be 2
        $status | ForEach-Object { $_.InDesiredState | Should -BeTrue }
        $status[0].Actual.State.ToString() | Should -Be 'Running'
    }

    It 'detects drift after a manual stop and repairs it' {
        Stop-KvmVm -Name 'pds-db' -Force -Confirm:$false
        $drift = Test-KvmDesiredState -Path $host1 -Detailed
        $drift.Property | Should -Be 'State'
        $drift.Expected | Should -Be 'Running'
        $drift.Actual | Should -Be 'Off'
        $results = Invoke-KvmDesiredState -Path $host1 -Confirm:$false
        $results.Action.Kind.ToString() | Should -Be 'Start'
        Test-KvmDesiredState -Path $host1 | Should -BeTrue
    }

    It 'lists VMs the manifest does not name with -IncludeUnmanaged' {
        New-KvmVm -Name 'pds-other' -MemoryStartupBytes 64MB -Confirm:$false | Out-Null
        $all = Get-KvmDesiredState -Path $host1 -IncludeUnmanaged
        ($all | Where-Object { $_ -is [KvmPS.PowerShell.KvmVm] }).Name | Should -Be 'pds-other'
        Remove-KvmVm -Name 'pds-other' -Force -Confirm:$false
    }

    It 'Invoke-KvmDesiredState -AsJob returns a job whose output is the step results' {
        $retire = New-TestManifest 'retire.psd1' "@{ VirtualMachines = @( @{ Name = 'pds-db'; Ensure = 'Absent' } ) }"
        $job = Invoke-KvmDesiredState -Path $retire -AsJob -Confirm:$false
        $job | Should -Not -BeNullOrEmpty
        $results = $job | Wait-Job -Timeout 60 | Receive-Job
        ($results | ForEach-Object { $_.Action.Kind.ToString() }) | Should -Be @('Stop', 'Remove')
        Get-KvmVm -Name 'pds-db' -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
}

Describe 'KvmVm DSC resource class' -Skip:(-not ($canRunVms -and $hasCli)) {
    BeforeAll {
        # The class is defined by the psm1; `using module` needs a literal path, so load it in a scriptblock.
        $script:newKvmVm = [scriptblock]::Create("using module '$dscModule'`n[KvmVm]::new()")
    }

    It 'Get/Test/Set a VM through kvmps dsc' {
        $resource = & $newKvmVm
        $resource.Name = 'pds-class'
        $resource.State = 'Running'
        $resource.StartupMemory = 64MB
        $resource.ProcessorCount = 2
        $resource.Test() | Should -BeFalse
        $resource.Get().Ensure.ToString() | Should -Be 'Absent'
        $resource.Set()
        $resource.Test() | Should -BeTrue
        $actual = $resource.Get()
        $actual.Ensure.ToString() | Should -Be 'Present'
        $actual.CurrentState | Should -Be 'Running'
        $actual.ProcessorCount | Should -Be 2
        $actual.StartupMemory | Should -Be 64MB

        $resource.Ensure = 'Absent'
        $resource.State = $null
        $resource.Set()
        $resource.Get().Ensure.ToString() | Should -Be 'Absent'
    }
}
