#Requires -Version 7.4
<#
    Export-KvmDesiredState: the VMs that exist now as a manifest, against real kvmps-vmm processes on the built-in
    guest in a private KVMPS_HOME. The exported manifest must test clean (Test-KvmDesiredState and `kvmps test`),
    read back with pwsh's own Import-PowerShellDataFile, and re-create the VMs when applied.
#>

BeforeAll {
    $script:repoRoot = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $script:modulePath = if ($env:KVMPS_MODULE_PATH) { $env:KVMPS_MODULE_PATH } else { Join-Path $repoRoot 'out/KvmPS/KvmPS.psd1' }
    $script:savedHome = $env:KVMPS_HOME
    $env:KVMPS_HOME = (New-Item -ItemType Directory -Path ("/tmp/ke-" + [guid]::NewGuid().ToString('N').Substring(0, 6))).FullName
    Import-Module $modulePath -Force
    # The kvmps CLI: the module's own bin/ (installed package) or the build layout's out/bin.
    $script:kvmps = @((Join-Path (Split-Path $modulePath) 'bin/kvmps'), (Join-Path $repoRoot 'out/bin/kvmps')) |
        Where-Object { Test-Path $_ } | Select-Object -First 1

    # Quotes of every kind (PowerShell treats the typographic ones as quotes too), a line break, a tab, `$ and a backtick.
    $script:awkwardNotes = "it's `"quoted`"`nsecond line`ttab `$HOME `$(Get-Date) ``tick`` " +
        [string]::new([char[]](0x2018, 0x63, 0x2019, 0x20, 0x201C, 0x64, 0x201D, 0x20, 0x47, 0xFC))
    New-KvmVm -Name 'exp-run' -MemoryStartupBytes 64MB -ProcessorCount 2 | Start-KvmVm
    New-KvmVm -Name 'exp-off' -MemoryStartupBytes 32MB -Notes $awkwardNotes | Out-Null
    New-KvmVm -Name 'exp-pause' -MemoryStartupBytes 32MB | Start-KvmVm -PassThru | Suspend-KvmVm
    New-KvmVm -Name 'other' -MemoryStartupBytes 32MB | Out-Null
}

AfterAll {
    Get-KvmVm -ErrorAction SilentlyContinue | Remove-KvmVm -Force -Confirm:$false -ErrorAction SilentlyContinue
    if ($env:KVMPS_HOME -like '/tmp/ke-*') { Remove-Item -Recurse -Force $env:KVMPS_HOME -ErrorAction SilentlyContinue }
    $env:KVMPS_HOME = $savedHome
}

Describe 'Export-KvmDesiredState' {
    It 'is exported by the module, with help and OutputType' {
        $command = Get-Command Export-KvmDesiredState -Module KvmPS
        $command.OutputType.Type | Should -Contain ([string])
        $command.OutputType.Type | Should -Contain ([System.IO.FileInfo])
        $help = Get-Help Export-KvmDesiredState -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 2
        ($help.Parameters.Parameter | Where-Object Name -eq 'Name').DefaultValue | Should -Be 'All VMs'
    }

    It 'writes the manifest text to the pipeline without -Path, and it tests clean' {
        $text = Export-KvmDesiredState
        $text | Should -BeOfType ([string])
        @($text).Count | Should -Be 1
        $file = Join-Path $TestDrive 'from pipeline.psd1'
        Set-Content -LiteralPath $file -Value $text -NoNewline
        Test-KvmDesiredState -Path $file | Should -BeTrue
        Test-KvmDesiredState -Path $file -Detailed | Should -BeNullOrEmpty
    }

    It 'writes -Path (a folder and name with spaces) that Test-KvmDesiredState and kvmps test report clean' {
        New-Item -ItemType Directory -Path (Join-Path $TestDrive 'my manifests') | Out-Null
        $file = Join-Path $TestDrive 'my manifests/this host.psd1'
        Export-KvmDesiredState -Path $file | Should -BeNullOrEmpty
        Test-KvmDesiredState -Path $file | Should -BeTrue
        $output = & $kvmps test $file 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output -join "`n")
    }

    It 'states each VM''s power state, definition and notes so that pwsh reads them back unchanged' {
        $data = Import-PowerShellDataFile -LiteralPath (Join-Path $TestDrive 'my manifests/this host.psd1')
        $vms = @{}
        foreach ($vm in $data.VirtualMachines) { $vms[$vm.Name] = $vm }
        $vms.Keys | Sort-Object | Should -Be @('exp-off', 'exp-pause', 'exp-run', 'other')
        $vms['exp-run'].State | Should -Be 'Running'
        $vms['exp-off'].State | Should -Be 'Off'
        $vms['exp-pause'].State | Should -Be 'Paused'
        $vms['exp-run'].VcpuCount | Should -Be 2
        $vms['exp-run'].MemoryStartupBytes | Should -Be 64MB
        $vms['exp-off'].Notes | Should -BeExactly $awkwardNotes
    }

    It 'selects by -Name with wildcards, by value and by property from Get-KvmVm' {
        function Get-Names([string] $Text) {
            $file = Join-Path $TestDrive 'names.psd1'
            Set-Content -LiteralPath $file -Value $Text -NoNewline
            @((Import-PowerShellDataFile -LiteralPath $file).VirtualMachines | ForEach-Object Name) | Sort-Object
        }
        Get-Names (Export-KvmDesiredState -Name 'exp-*') | Should -Be @('exp-off', 'exp-pause', 'exp-run')
        Get-Names (Export-KvmDesiredState 'other', 'exp-run') | Should -Be @('exp-run', 'other')
        Get-Names ('exp-off', 'other' | Export-KvmDesiredState) | Should -Be @('exp-off', 'other')
        Get-Names (Get-KvmVm -Name 'exp-r*' | Export-KvmDesiredState) | Should -Be @('exp-run')
        Get-Names ([pscustomobject]@{ Name = 'other' } | Export-KvmDesiredState) | Should -Be @('other')
    }

    It 'exports no VM when the pipeline selects none (not every VM)' {
        $text = Get-KvmVm -Name 'nothing-matches*' | Export-KvmDesiredState
        $text | Should -Match 'VirtualMachines = @\(\)'
    }

    It 'reports a name that matches no VM as VmNotFound with the name as target, and still exports the rest' {
        $text = Export-KvmDesiredState -Name 'nope', 'other' -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be 'VmNotFound,KvmPS.Commands.ExportKvmDesiredStateCommand'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be 'nope'
        $text | Should -Match "Name\s+= 'other'"
        $text | Should -Not -Match "'exp-run'"
    }

    It 'does not replace an existing file without -Force' {
        $file = Join-Path $TestDrive 'existing.psd1'
        Set-Content -LiteralPath $file -Value '# keep me'
        Export-KvmDesiredState -Path $file -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be 'ManifestFileExists,KvmPS.Commands.ExportKvmDesiredStateCommand'
        $err[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        $err[0].TargetObject | Should -Be $file
        Get-Content -LiteralPath $file | Should -Be '# keep me'

        $result = Export-KvmDesiredState -Path $file -Force -PassThru
        $result | Should -BeOfType ([System.IO.FileInfo])
        $result.FullName | Should -Be $file
        # The provider's item, as Get-Item gives it: the FileSystem view shows its mode and size.
        $result.PSProvider.Name | Should -Be 'FileSystem'
        ($result | Format-Table | Out-String) | Should -Match ([regex]::Escape("$($result.Length) $($result.Name)"))
        Test-KvmDesiredState -Path $file | Should -BeTrue
    }

    It 'writes nothing with -WhatIf' {
        $file = Join-Path $TestDrive 'whatif.psd1'
        Export-KvmDesiredState -Name 'exp-run' -Path $file -WhatIf | Should -BeNullOrEmpty
        Test-Path $file | Should -BeFalse
    }

    It 'writes with -Confirm:$false (the file write is the only ShouldProcess step)' {
        $file = Join-Path $TestDrive 'confirm.psd1'
        Export-KvmDesiredState -Path $file -Confirm:$false
        Test-Path $file | Should -BeTrue
    }

    It 'completes VM names for -Name' {
        $line = 'Export-KvmDesiredState -Name exp-r'
        $completions = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText
        $completions | Should -Contain 'exp-run'
    }

    It 'is the desired state round trip: drift shows, Invoke-KvmDesiredState restores it, and removed VMs come back' {
        $file = Join-Path $TestDrive 'roundtrip.psd1'
        Export-KvmDesiredState -Name 'exp-*' -Path $file
        Stop-KvmVm -Name 'exp-run' -TurnOff -Confirm:$false
        Set-KvmVm -Name 'exp-off' -Notes 'changed'
        Test-KvmDesiredState -Path $file | Should -BeFalse
        (Test-KvmDesiredState -Path $file -Detailed).Property | Sort-Object | Should -Be @('Notes', 'State')

        Invoke-KvmDesiredState -Path $file -Confirm:$false | Out-Null
        Test-KvmDesiredState -Path $file | Should -BeTrue
        (Get-KvmVm -Name 'exp-off').Notes | Should -BeExactly $awkwardNotes

        Get-KvmVm -Name 'exp-*' | Remove-KvmVm -Force -Confirm:$false
        Invoke-KvmDesiredState -Path $file -Confirm:$false | Out-Null
        Test-KvmDesiredState -Path $file | Should -BeTrue
        (Get-KvmVm -Name 'exp-run').State | Should -Be 'Running'
        (Get-KvmVm -Name 'exp-pause').State | Should -Be 'Paused'
        (Get-KvmVm -Name 'exp-run').ProcessorCount | Should -Be 2
    }
}
