#Requires -Version 7.4
# Export-KvmVm: folder layout, checkpoints carried, state and target errors, -WhatIf, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name ex-a | Out-Null
    New-KvmTestVm -Name ex-run -Start | Out-Null
    Checkpoint-KvmVm ex-a -SnapshotName s1
    $script:Target = Join-Path $env:KVMPS_HOME 'export'
}

AfterAll { Complete-KvmTest }

Describe 'Export-KvmVm' {
    It 'writes PATH/NAME with the definition, checkpoints and export.json' {
        Export-KvmVm ex-a -Path $script:Target | Should -BeNullOrEmpty
        $folder = Join-Path $script:Target 'ex-a'
        Test-Path (Join-Path $folder 'vm.json') | Should -BeTrue
        Test-Path (Join-Path $folder 'export.json') | Should -BeTrue
        @(Get-ChildItem (Join-Path $folder 'snapshots') -Directory).Count | Should -Be 1
    }

    It 'refuses a target that is not empty, naming it' {
        Export-KvmVm ex-a -Path $script:Target -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmExportFailed -Command Export-KvmVm -Category WriteError -TargetObject (Join-Path $script:Target 'ex-a')
    }

    It 'refuses a running VM' {
        Get-KvmVm ex-run | Export-KvmVm -Path $script:Target -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Export-KvmVm -Category InvalidOperation -NoTarget
        Test-Path (Join-Path $script:Target 'ex-run') | Should -BeFalse
    }

    It '-WhatIf exports nothing' {
        $other = Join-Path $env:KVMPS_HOME 'other'
        (Get-KvmWhatIfLine { Export-KvmVm ex-a -Path $other -WhatIf }) | Should -Match 'Export VM to'
        Test-Path $other | Should -BeFalse
    }

    It 'has help' { Assert-KvmHelp Export-KvmVm | Out-Null }
}
