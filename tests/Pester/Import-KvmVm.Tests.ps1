#Requires -Version 7.4
# Import-KvmVm: move or copy an export into the store, clones with new MAC addresses, name conflicts, bad exports, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name im-a | Out-Null
    Add-KvmNetworkAdapter im-a -MacAddress '52:54:00:12:34:56' -TapName imtap0 -Confirm:$false
    Checkpoint-KvmVm im-a -SnapshotName s1
    $script:Export = Join-Path $env:KVMPS_HOME 'export'
    Export-KvmVm im-a -Path $script:Export
    $script:Folder = Join-Path $script:Export 'im-a'
}

AfterAll { Complete-KvmTest }

Describe 'Import-KvmVm' {
    It 'refuses a VM whose name is in the store, naming it' {
        Import-KvmVm $script:Folder -Copy -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmAlreadyExists -Command Import-KvmVm -Category ResourceExists -TargetObject $script:Folder
        "$($err[0])" | Should -Match "'im-a'"
    }

    It '-Copy -GenerateNewId imports a clone with a new MAC address and keeps the export' {
        Remove-KvmVm im-a -Force -Confirm:$false
        $vm = Import-KvmVm -Path $script:Folder -Copy -GenerateNewId
        $vm.Name | Should -Be 'im-a'
        $vm.NetworkAdapters[0].MacAddress.ToString() | Should -Not -Be '52:54:00:12:34:56'
        (Get-KvmVmSnapshot im-a).Name | Should -Be 's1'
        Test-Path $script:Folder | Should -BeTrue
    }

    It 'moves the export without -Copy, keeping the MAC address' {
        Remove-KvmVm im-a -Force -Confirm:$false
        Get-Item $script:Export | Import-KvmVm | Out-Null
        (Get-KvmVm im-a).NetworkAdapters[0].MacAddress.ToString() | Should -Be '52:54:00:12:34:56'
        Test-Path $script:Folder | Should -BeFalse
    }

    It 'reports a folder without an export as InvalidData naming it' {
        $empty = Join-Path $env:KVMPS_HOME 'empty'
        New-Item -ItemType Directory $empty | Out-Null
        Import-KvmVm $empty -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmImportFailed -Command Import-KvmVm -Category InvalidData -TargetObject $empty
    }

    It 'a clone with new ids starts from its saved state with its new MAC' {
        # The VM's tap lives in a network namespace of the test's own: the VM is made and started by a pwsh inside it
        # (VMMs inherit the namespace), and inspected from here through the shared store.
        $ns = 'kvt-im' + [guid]::NewGuid().ToString('N').Substring(0, 6)
        & ip netns add $ns
        try {
            $export = Join-Path $env:KVMPS_HOME 'export-saved'
            $inside = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$((Get-Module KvmPS).Path)'
New-KvmVm -Name im-sv -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
Add-KvmNetworkAdapter im-sv -MacAddress '52:54:00:12:34:77' -TapName imsv0 -Confirm:`$false
Start-KvmVm im-sv -Confirm:`$false
Save-KvmVm im-sv -Confirm:`$false
Export-KvmVm im-sv -Path '$export' | Out-Null
Remove-KvmVm im-sv -Confirm:`$false
Import-KvmVm '$(Join-Path $export 'im-sv')' -Copy -GenerateNewId | Out-Null
if ((Get-KvmVm im-sv).State -ne 'Saved') { throw 'the clone is not Saved' }
Start-KvmVm im-sv -Confirm:`$false
"@
            $output = & (Get-KvmTestNetnsRunner) $ns (Join-Path $PSHOME 'pwsh') -NoProfile -NonInteractive -Command $inside 2>&1
            $LASTEXITCODE | Should -Be 0 -Because "$output"
            $vm = Get-KvmVm im-sv
            $vm.State | Should -Be 'Running'
            $vm.NetworkAdapters[0].MacAddress.ToString() | Should -Not -Be '52:54:00:12:34:77'
        }
        finally {
            Remove-KvmVm im-sv -Force -Confirm:$false -ErrorAction SilentlyContinue
            & ip netns delete $ns
        }
    }

    It 'has help' { Assert-KvmHelp Import-KvmVm | Out-Null }
}
