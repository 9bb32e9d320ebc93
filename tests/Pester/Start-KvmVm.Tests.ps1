#Requires -Version 7.4
# Start-KvmVm: starting by name, object and property; -PassThru, -WhatIf, -AsJob, errors, help and completion.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    foreach ($n in 'st-a', 'st-b', 'st-c', 'st-d') { New-KvmTestVm -Name $n | Out-Null }
}

AfterAll { Complete-KvmTest }

Describe 'Start-KvmVm' {
    AfterEach {
        Get-KvmVm | Where-Object IsActive | Stop-KvmVm -TurnOff
    }

    It 'starts a VM by name and outputs nothing without -PassThru' {
        Start-KvmVm -Name st-a | Should -BeNullOrEmpty
        $vm = Get-KvmVm st-a
        $vm.State | Should -Be 'Running'
        $vm.ProcessId | Should -BeGreaterThan 0
        (Get-Process -Id $vm.ProcessId).Path | Should -Be (Get-Item $env:KVMPS_VMM).FullName
    }

    It '-PassThru outputs the running VM' {
        $vm = Start-KvmVm st-a -PassThru
        $vm | Should -BeOfType ([KvmPS.PowerShell.KvmVm])
        $vm.State | Should -Be 'Running'
    }

    It 'starts the VMs a wildcard selects' {
        Start-KvmVm -Name 'st-[bc]'
        (Get-KvmVm st-b, st-c).State | Should -Be @('Running', 'Running')
        (Get-KvmVm st-a).State | Should -Be 'Off'
    }

    It 'takes VM objects from the pipeline by value' {
        Get-KvmVm st-a, st-d | Start-KvmVm
        (Get-KvmVm st-a, st-d).State | Should -Be @('Running', 'Running')
    }

    It 'takes Name and VMName from the pipeline by property name' {
        [pscustomobject]@{ Name = 'st-b' } | Start-KvmVm
        [pscustomobject]@{ VMName = 'st-c' } | Start-KvmVm
        (Get-KvmVm st-b, st-c).State | Should -Be @('Running', 'Running')
    }

    It '-WhatIf starts nothing and names the VM' {
        $lines = Get-KvmWhatIfLine { Start-KvmVm st-a, st-b -WhatIf }
        @($lines).Count | Should -Be 2
        $lines[0] | Should -Match '"Start VM" on target "st-a"'
        (Get-KvmVm st-a, st-b).State | Should -Be @('Off', 'Off')
    }

    It '-Confirm:$false starts without asking' {
        Start-KvmVm st-a -Confirm:$false
        (Get-KvmVm st-a).State | Should -Be 'Running'
    }

    It '-AsJob returns a job whose output is the running VM' {
        $job = Start-KvmVm st-a -AsJob
        $job | Should -BeOfType ([System.Management.Automation.Job])
        $result = $job | Receive-Job -Wait -AutoRemoveJob
        $result.Name | Should -Be 'st-a'
        $result.State | Should -Be 'Running'
    }

    It 'reports a VM that is already running as InvalidOperation, naming it' {
        Start-KvmVm st-a
        Start-KvmVm st-a -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Start-KvmVm -Category InvalidOperation -TargetObject 'st-a'
        "$($err[0])" | Should -Match 'already running'
    }

    It 'tells to resume a paused VM rather than calling it already paused' -Tag 'Issue9' {
        Start-KvmVm st-a
        Suspend-KvmVm st-a
        Start-KvmVm st-a -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Start-KvmVm -Category InvalidOperation -TargetObject 'st-a'
        "$($err[0])" | Should -Match "VM 'st-a' is paused; resume it \(Resume-KvmVm\)"
    }

    It 'reports a missing VM as ObjectNotFound and starts the others' {
        Start-KvmVm nosuch, st-b -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Start-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
        (Get-KvmVm st-b).State | Should -Be 'Running'
    }

    It 'says plainly that the kernel file is missing (not a runtime resource key)' -Tag 'Issue9' {
        $kernel = Join-Path $TestDrive 'no-such-vmlinuz'
        New-KvmVm st-kernel -KernelPath $kernel -MemoryStartupBytes 64MB | Out-Null
        Start-KvmVm st-kernel -ErrorVariable err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 1
        $err[0].TargetObject | Should -Be 'st-kernel'
        "$($err[0])" | Should -Match ([regex]::Escape("$($kernel): cannot read the kernel image: no such file"))
        "$($err[0])" | Should -Not -Match 'IO_FileNotFound'
        Remove-KvmVm st-kernel -Force -Confirm:$false
    }

    It 'is silent when a wildcard matches nothing' {
        Start-KvmVm 'none*' -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'finds kvmps-vmm in the published layout (KvmPS beside bin) without KVMPS_VMM' -Tag 'Issue9' {
        # A copy away from the repository, so no search that walks up to KvmPS.sln can find out/bin instead.
        $layout = Join-Path $env:KVMPS_HOME 'layout'
        $moduleDir = Split-Path -Parent (Get-KvmTestModulePath)
        New-Item -ItemType Directory -Path (Join-Path $layout 'bin') -Force | Out-Null
        Copy-Item -LiteralPath $moduleDir -Destination (Join-Path $layout 'KvmPS') -Recurse
        # Without the bin/ the published module carries (ModulePackage.Tests covers that one): ../bin must serve.
        Remove-Item -LiteralPath (Join-Path $layout 'KvmPS/bin') -Recurse -Force -ErrorAction SilentlyContinue
        Copy-Item -LiteralPath $env:KVMPS_VMM -Destination (Join-Path $layout 'bin/kvmps-vmm')
        $manifest = Join-Path $layout 'KvmPS' (Split-Path -Leaf (Get-KvmTestModulePath))
        $child = Invoke-KvmChildPwsh -NoImport -Environment @{ KVMPS_VMM = $null } -Script @"
Import-Module '$manifest' -ErrorAction Stop
New-KvmVm -Name st-novmm -MemoryStartupBytes 64MB | Start-KvmVm
`$vm = Get-KvmVm st-novmm
'STATE=' + `$vm.State
'VMM=' + (Get-Process -Id `$vm.ProcessId).Path
Remove-KvmVm st-novmm -Force -Confirm:`$false
"@
        Remove-KvmTestVm st-novmm
        $child.Error | Should -BeNullOrEmpty
        $child.Output | Should -Contain 'STATE=Running'
        # Not some other kvmps-vmm (e.g. one found by walking up from pwsh's own folder to a KvmPS.sln).
        $child.Output | Should -Contain ('VMM=' + (Join-Path $layout 'bin/kvmps-vmm'))
    }

    It 'has full help' {
        Assert-KvmHelp Start-KvmVm | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Start-KvmVm -Name st-' | Should -Be @('st-a', 'st-b', 'st-c', 'st-d')
        Get-KvmCompletion 'Start-KvmVm -VMName st-d' | Should -Be @('st-d')
    }
}
