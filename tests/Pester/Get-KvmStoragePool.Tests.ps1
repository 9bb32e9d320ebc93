#Requires -Version 7.4
# Get-KvmStoragePool: the default pool out of the box, names and wildcards, not-found errors, completion, the view and help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:base = Join-Path ([IO.Path]::GetTempPath()) ('kpool-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $base | Out-Null
    & chmod 700 $base
    New-KvmStoragePool lab1 (Join-Path $base 'lab1') -CreatePath | Out-Null
    New-KvmStoragePool lab2 (Join-Path $base 'lab2') -CreatePath | Out-Null
}

AfterAll {
    Remove-Item -LiteralPath $base -Recurse -Force -ErrorAction SilentlyContinue
    Complete-KvmTest
}

Describe 'Get-KvmStoragePool' {
    It 'has the default pool under the store out of the box' {
        $default = Get-KvmStoragePool default
        $default.IsDefault | Should -BeTrue
        $default.Path | Should -Be (Join-Path $env:KVMPS_HOME 'pools/default')
        $default.State | Should -Be 'Active'
    }

    It 'lists every pool, default first' {
        (Get-KvmStoragePool).Name | Should -Be @('default', 'lab1', 'lab2')
    }

    It 'selects by wildcard' {
        (Get-KvmStoragePool lab*).Name | Should -Be @('lab1', 'lab2')
    }

    It 'reports a missing folder as Missing' {
        $folder = Join-Path $base 'gone'
        New-KvmStoragePool gone $folder -CreatePath | Out-Null
        Remove-Item -LiteralPath $folder
        (Get-KvmStoragePool gone).State | Should -Be 'Missing'
    }

    It 'names a pool that does not exist' {
        Get-KvmStoragePool nope -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Assert-KvmError $err -ErrorId StoragePoolNotFound -Command Get-KvmStoragePool -Category ObjectNotFound -TargetObject 'nope'
    }

    It 'completes pool names' {
        Get-KvmCompletion 'Get-KvmStoragePool la' | Should -Be @('lab1', 'lab2')
    }

    It 'shows pools as a table that fits 80 columns' {
        $lines = Assert-KvmView (Get-KvmStoragePool) -View Table
        $lines[0] | Should -Match '^Name\s+State\s+Auto\s+SizeGB\s+UsedGB\s+FreeGB\s+Vols\s+Path'
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmStoragePool | Out-Null
    }
}
