#Requires -Version 7.4
# Get-KvmVm: listing, selection (names, wildcards, pipeline), not-found errors, views, help and completion.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name web-a -Start | Out-Null
    New-KvmTestVm -Name web-b | Out-Null
    New-KvmTestVm -Name db-a | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Get-KvmVm' {
    Context 'selection' {
        It 'lists every VM without -Name, sorted by name' {
            (Get-KvmVm).Name | Should -Be @('db-a', 'web-a', 'web-b')
        }

        It 'returns KvmVm objects with live state' {
            $vm = Get-KvmVm -Name web-a
            $vm | Should -BeOfType ([KvmPS.PowerShell.KvmVm])
            $vm.State | Should -Be 'Running'
            $vm.ProcessId | Should -BeGreaterThan 0
            $vm.MemoryAssignedBytes | Should -Be 64MB
            (Get-KvmVm -Name web-b).State | Should -Be 'Off'
            (Get-KvmVm -Name web-b).ProcessId | Should -BeNullOrEmpty
        }

        It 'takes the name by position and matches wildcards' {
            (Get-KvmVm web*).Name | Should -Be @('web-a', 'web-b')
            (Get-KvmVm '*-a').Name | Should -Be @('db-a', 'web-a')
            (Get-KvmVm 'WEB-A').Name | Should -Be 'web-a' -Because 'VM names are matched without case, like Hyper-V'
        }

        It 'takes several names and reports each VM once' {
            (Get-KvmVm -Name db-a, 'web*', web-a).Name | Should -Be @('db-a', 'web-a', 'web-b')
        }

        It 'takes names from the pipeline by value' {
            ('db-a', 'web-b' | Get-KvmVm).Name | Should -Be @('db-a', 'web-b')
        }

        It 'takes Name and VMName from the pipeline by property name' {
            ([pscustomobject]@{ Name = 'db-a' } | Get-KvmVm).Name | Should -Be 'db-a'
            ([pscustomobject]@{ VMName = 'web-b' } | Get-KvmVm).Name | Should -Be 'web-b'
        }

        It 'is silent when a wildcard matches nothing' {
            Get-KvmVm -Name 'nothing*' -ErrorVariable err | Should -BeNullOrEmpty
            $err | Should -BeNullOrEmpty
        }

        It 'reports a literal name that does not exist as ObjectNotFound and goes on' {
            $vms = Get-KvmVm -Name nosuch, db-a -ErrorVariable err -ErrorAction SilentlyContinue
            $vms.Name | Should -Be 'db-a'
            Assert-KvmError $err -ErrorId VmNotFound -Command Get-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
            "$($err[0])" | Should -Match "'nosuch'"
        }

        It 'rejects an empty name at binding, naming -Name' {
            $e = { Get-KvmVm -Name '' -ErrorAction Stop } | Should -Throw -ErrorId 'ParameterArgumentValidationError,KvmPS.Commands.GetKvmVmCommand' -PassThru
            $e.Exception.Message | Should -Match "parameter 'Name'"
        }
    }

    Context 'views' {
        It 'shows a table of Name, State, CPUs, MemoryMB and Uptime in 80 columns' {
            $lines = Assert-KvmView (Get-KvmVm) -View Default
            $lines[0] | Should -Match '^Name\s+State\s+CPUs\s+MemoryMB\s+Uptime'
            $lines.Count | Should -Be 5 -Because 'a header, its dashes and one line per VM'
            ($lines | Where-Object { $_ -match '^web-a\s+Running\s+1\s+64\s' }) | Should -Not -BeNullOrEmpty
        }

        It 'shows a list view in 80 columns' -Tag 'Issue9' {
            $lines = Assert-KvmView (Get-KvmVm web-a) -View List
            ($lines -match '^Name\s+: web-a$') | Should -Not -BeNullOrEmpty
            ($lines -match '^ProcessorCount\s+: 1 \(maximum 1\)$') | Should -Not -BeNullOrEmpty
            ($lines -match '^MemoryStartup\s+: 64 Mi?B$') | Should -Not -BeNullOrEmpty
            # The uptime as the table shows it (d.hh:mm:ss), not a TimeSpan's ticks.
            ($lines -match '^Uptime\s+: \d+\.\d\d:\d\d:\d\d$') | Should -Not -BeNullOrEmpty
        }

        It 'Format-List does not dump the boot record' -Tag 'Issue9' {
            $text = Get-KvmVm web-a | Format-List | Out-String -Width 80
            $text | Should -Not -Match 'DefaultGuestBoot \{'
            $text | Should -Not -Match '\{ Cmdline ='
        }

        It 'Format-List * shows the flat properties, not the management records' -Tag 'Issue9' {
            $text = Get-KvmVm web-a | Format-List * | Out-String -Width 80
            $text | Should -Match '(?m)^Name\s+: web-a'
            $text | Should -Not -Match 'VmInfo \{|VmDefinition \{'
        }
    }

    Context 'help and completion' {
        It 'has full help' {
            Assert-KvmHelp Get-KvmVm | Out-Null
        }

        It 'completes VM names for -Name and by position' {
            Get-KvmCompletion 'Get-KvmVm -Name w' | Should -Be @('web-a', 'web-b')
            Get-KvmCompletion 'Get-KvmVm d' | Should -Be @('db-a')
            Get-KvmCompletion 'Get-KvmVm -VMName web-' | Should -Be @('web-a', 'web-b')
            Get-KvmCompletion 'Get-KvmVm -Name zz' | Should -BeNullOrEmpty
        }
    }
}
