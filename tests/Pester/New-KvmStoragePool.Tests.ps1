#Requires -Version 7.4
# New-KvmStoragePool: a directory pool kept in the store, bad folders refused naming the path, -WhatIf, the view and help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:base = Join-Path ([IO.Path]::GetTempPath()) ('kpool-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $base | Out-Null
    & chmod 700 $base
}

AfterAll {
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
    Complete-KvmTest
}

Describe 'New-KvmStoragePool' {
    It 'defines a pool on an existing folder and reports its space' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $base 'lab')
        $pool = New-KvmStoragePool -Name lab -Path $folder.FullName -Autostart
        $pool | Should -BeOfType ([KvmPS.Management.Pools.StoragePoolInfo])
        $pool.Name | Should -Be 'lab'
        $pool.Path | Should -Be $folder.FullName
        $pool.Autostart | Should -BeTrue
        $pool.State | Should -Be 'Active'
        $pool.CapacityBytes | Should -BeGreaterThan 0
        $pool.AvailableBytes | Should -BeGreaterThan 0
    }

    It 'is seen by a new session (the pool is kept in the store)' {
        $child = Invoke-KvmChildPwsh '(Get-KvmStoragePool lab).Path'
        $child.ExitCode | Should -Be 0 -Because $child.Error
        $child.Output | Should -Contain (Join-Path $base 'lab')
    }

    It 'creates a missing folder only with -CreatePath' {
        $missing = Join-Path $base 'new'
        New-KvmStoragePool made $missing -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Assert-KvmError $err -ErrorId InvalidStoragePoolSetting -Command New-KvmStoragePool -Category InvalidArgument -TargetObject $missing
        "$($err[0])" | Should -Match 'does not exist'
        Test-Path $missing | Should -BeFalse

        (New-KvmStoragePool made $missing -CreatePath).State | Should -Be 'Active'
        Test-Path $missing -PathType Container | Should -BeTrue
    }

    It 'refuses a file, naming the path, and makes nothing' {
        $file = Join-Path $base 'a-file'
        Set-Content -Path $file -Value 'x'
        New-KvmStoragePool filepool $file -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidStoragePoolSetting -Command New-KvmStoragePool -Category InvalidArgument -TargetObject $file
        "$($err[0])" | Should -Match 'is a file'
        Get-KvmStoragePool filepool -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'refuses a duplicate name' {
        New-KvmStoragePool lab (Join-Path $base 'new') -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId StoragePoolExists -Command New-KvmStoragePool -Category ResourceExists -TargetObject 'lab'
    }

    It '-WhatIf defines nothing' {
        $lines = Get-KvmWhatIfLine { New-KvmStoragePool whatif $base -WhatIf }
        $lines | Should -Match 'whatif'
        Get-KvmStoragePool whatif -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'takes name and path from the pipeline by property name' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $base 'piped')
        $pool = [pscustomobject]@{ Name = 'piped'; Path = $folder.FullName } | New-KvmStoragePool
        $pool.Name | Should -Be 'piped'
    }

    It 'has full help' {
        Assert-KvmHelp New-KvmStoragePool | Out-Null
    }
}
