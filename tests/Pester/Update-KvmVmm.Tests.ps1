#Requires -Version 7.4
# Update-KvmVmm: live upgrade of the VMM of built-in-guest VMs; pipeline, all running VMs, -PassThru, -WhatIf, errors, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    # The built-in guest's "work" workload: a memory pattern it re-checks all the time and a counter on the console.
    foreach ($name in 'up-a', 'up-b') {
        $null = New-KvmVm -Definition @{ Name = $name; MemoryStartupBytes = 64MB; Boot = @{ Cmdline = 'kvmps.run=work 4' } } -Confirm:$false -ErrorAction Stop
        Start-KvmVm -Name $name -Confirm:$false -ErrorAction Stop
    }
    New-KvmTestVm -Name up-off | Out-Null

    function Get-UpCount([string] $Name) {
        # Just started, the log may still be empty, which Get-Content -Raw returns as $null: count 0 then.
        $text = [string](Get-Content -Raw (Join-Path (Get-KvmVm $Name).Path 'serial.log') -ErrorAction SilentlyContinue)
        $counts = [regex]::Matches($text, 'work: count (\d+)') | ForEach-Object { [long]$_.Groups[1].Value }
        if ($counts) { $counts[-1] } else { 0 }
    }
    function Wait-UpCount([string] $Name, [long] $AtLeast) {
        $deadline = (Get-Date).AddSeconds(60)
        while ((Get-UpCount $Name) -lt $AtLeast) {
            if ((Get-Date) -gt $deadline) { throw "VM $Name did not count to $AtLeast" }
            Start-Sleep -Milliseconds 100
        }
    }
    Wait-UpCount up-a 3
    Wait-UpCount up-b 3
}

AfterAll { Complete-KvmTest }

Describe 'Update-KvmVmm' {
    It 'moves a running VM into a new VMM process; its guest counts on without a reboot' {
        $before = Get-KvmVm up-a
        $count = Get-UpCount up-a
        $vm = Update-KvmVmm -Name up-a -PassThru -Confirm:$false
        $vm.Name | Should -Be 'up-a'
        $vm.State | Should -Be 'Running'
        $vm.ProcessId | Should -Not -Be $before.ProcessId
        (Get-KvmVm up-a).ProcessId | Should -Be $vm.ProcessId
        Wait-UpCount up-a ($count + 3)
        $serial = Get-Content -Raw (Join-Path $vm.Path 'serial.log')
        $serial | Should -Not -Match 'FAILED'
        ([regex]::Matches($serial, 'KvmPS built-in guest')).Count | Should -Be 1 -Because 'the guest booted once'
    }

    It 'moves a VM with a disk: the new VMM runs it on the same image, handed over open' {
        $null = New-KvmVm -Definition @{ Name = 'up-disk'; MemoryStartupBytes = 64MB; Boot = @{ Cmdline = 'kvmps.run=work 4' }; Disks = @(@{ Path = 'data.qcow2'; SizeBytes = 4MB }) } -Confirm:$false -ErrorAction Stop
        Start-KvmVm -Name up-disk -Confirm:$false -ErrorAction Stop
        Wait-UpCount up-disk 3
        $before = (Get-KvmVm up-disk).ProcessId
        $vm = Update-KvmVmm -Name up-disk -PassThru -Confirm:$false -ErrorAction Stop
        $vm.State | Should -Be 'Running'
        $vm.ProcessId | Should -Not -Be $before
        Get-Content -Raw (Join-Path $vm.Path 'vmm.log') | Should -Match '1 disks handed over \(not copied\)'
        Wait-UpCount up-disk ((Get-UpCount up-disk) + 2)
        Stop-KvmVm -Name up-disk -TurnOff -Confirm:$false
        Remove-KvmVm -Name up-disk -Confirm:$false
    }

    It 'moves a VM with a network adapter: the new VMM keeps its tap, handed over open' {
        # Once refused (the new VMM could not attach to the tap the running one held); the VM runs in a namespace of its own.
        $ns = New-KvmTestNetName 'kvtup'
        try {
            $vm = Start-KvmTestVmInNamespace -Name up-nic -Namespace $ns -Setup "Add-KvmNetworkAdapter up-nic -TapName upnic0 -MacAddress '52:54:00:aa:00:41'"
            $index = (& ip -n $ns -o link show upnic0) -replace ':.*'
            $index | Should -Match '^\d+$'
            $r = Invoke-KvmTestInNamespace -Namespace $ns -Script 'Update-KvmVmm -Name up-nic -Confirm:$false'
            $r.ExitCode | Should -Be 0 -Because ($r.Output -join "`n")
            $after = Get-KvmVm up-nic
            $after.State | Should -Be 'Running'
            $after.ProcessId | Should -Not -Be $vm.ProcessId
            ((& ip -n $ns -o link show upnic0) -replace ':.*') | Should -Be $index -Because 'the same tap, not one made again'
            Get-Content -Raw (Join-Path $after.Path 'vmm.log') | Should -Match '1 taps handed over'
        }
        finally {
            Stop-KvmVm -Name up-nic -TurnOff -Confirm:$false -ErrorAction SilentlyContinue
            Remove-KvmVm -Name up-nic -Confirm:$false -ErrorAction SilentlyContinue
            & ip netns delete $ns
        }
    }

    It 'without -Name upgrades every running VM and skips the ones that are off' {
        $pids = @{ 'up-a' = (Get-KvmVm up-a).ProcessId; 'up-b' = (Get-KvmVm up-b).ProcessId }
        $out = Update-KvmVmm -PassThru -Confirm:$false
        ($out.Name | Sort-Object) | Should -Be @('up-a', 'up-b')
        foreach ($vm in $out) { $vm.ProcessId | Should -Not -Be $pids[$vm.Name] }
        (Get-KvmVm up-off).State | Should -Be 'Off'
    }

    It 'takes VM objects by value and names by property name' {
        $old = (Get-KvmVm up-b).ProcessId
        Get-KvmVm up-b | Update-KvmVmm -Confirm:$false | Should -BeNullOrEmpty
        $mid = (Get-KvmVm up-b).ProcessId
        $mid | Should -Not -Be $old
        [pscustomobject]@{ Name = 'up-b' } | Update-KvmVmm -Confirm:$false
        (Get-KvmVm up-b).ProcessId | Should -Not -Be $mid
        (Get-KvmVm up-b).State | Should -Be 'Running'
    }

    It '-WhatIf changes nothing' {
        $old = (Get-KvmVm up-a).ProcessId
        $lines = Get-KvmWhatIfLine { Update-KvmVmm up-a -WhatIf }
        $lines | Should -Match 'Upgrade the VMM .* on target "up-a"'
        (Get-KvmVm up-a).ProcessId | Should -Be $old
    }

    It 'reports a VM that is off as InvalidOperation, naming it; a missing one as ObjectNotFound' {
        Update-KvmVmm up-off -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Update-KvmVmm -Category InvalidOperation -TargetObject 'up-off'
        "$($err[0])" | Should -Match "'up-off' is off"
        Update-KvmVmm nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Update-KvmVmm -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has full help' {
        Assert-KvmHelp Update-KvmVmm | Out-Null
    }
}
