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

    It 'has help' { Assert-KvmHelp Import-KvmVm | Out-Null }
}
