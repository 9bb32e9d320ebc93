#Requires -Version 7.4
# Remove-KvmVm: removal with and without -Force and -KeepDisks, confirmation (ConfirmImpact High), pipeline, errors.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
}

AfterAll { Complete-KvmTest }

Describe 'Remove-KvmVm' {
    It 'removes a VM that is off, with its folder, and outputs nothing' {
        $vm = New-KvmTestVm -Name rm-a
        Remove-KvmVm rm-a -Confirm:$false | Should -BeNullOrEmpty
        Get-KvmVm rm-a -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Test-Path -LiteralPath $vm.Path | Should -BeFalse
    }

    It 'refuses to remove a running VM without -Force, naming it' {
        New-KvmTestVm -Name rm-run -Start | Out-Null
        Remove-KvmVm rm-run -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Remove-KvmVm -Category InvalidOperation -TargetObject 'rm-run'
        "$($err[0])" | Should -Match '-Force'
        (Get-KvmVm rm-run).State | Should -Be 'Running'
    }

    It '-Force turns a running VM off and removes it' {
        $pid1 = (Get-KvmVm rm-run).ProcessId
        Remove-KvmVm rm-run -Force -Confirm:$false
        Get-KvmVm rm-run -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-Process -Id $pid1 -ErrorAction SilentlyContinue | Where-Object { $_.ProcessName -ne 'Zombie' -and -not $_.HasExited } |
            ForEach-Object { (Get-Content "/proc/$($_.Id)/stat" -Raw).Split(' ')[2] } | Where-Object { $_ -ne 'Z' } |
            Should -BeNullOrEmpty -Because 'the VMM process ends'
    }

    It '-KeepDisks keeps the disk folder and -PassThru says where' {
        New-KvmTestVm -Name rm-keep | Out-Null
        Add-KvmDisk rm-keep -Path data.img -SizeBytes 1MB
        $result = Remove-KvmVm rm-keep -KeepDisks -PassThru -Confirm:$false
        $result | Should -Not -BeNullOrEmpty
        $result.RetainedDisksDirectory | Should -Not -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $result.RetainedDisksDirectory 'data.img') | Should -BeTrue
        Get-KvmVm rm-keep -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'deletes the checkpoints'' internal snapshots from a disk outside the store, which stays' {
        $qcow = Join-Path $env:KVMPS_HOME 'rm-outside.qcow2'
        New-KvmDiskImage -Path $qcow -SizeBytes 1MB -Format Qcow2 | Out-Null
        New-KvmTestVm -Name rm-cp | Out-Null
        Add-KvmDisk rm-cp -Path $qcow -Confirm:$false
        $s1 = Checkpoint-KvmVm rm-cp -SnapshotName s1 -PassThru
        $s2 = Checkpoint-KvmVm rm-cp -SnapshotName s2 -PassThru
        @([KvmPS.Storage.DiskSnapshots]::List($qcow)).Count | Should -Be 2
        $result = Remove-KvmVm rm-cp -PassThru -Confirm:$false -Verbose 4>&1
        $verbose = @($result | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] })
        $removed = $result | Where-Object { $_ -isnot [System.Management.Automation.VerboseRecord] }
        Test-Path -LiteralPath $qcow | Should -BeTrue
        [KvmPS.Storage.DiskSnapshots]::List($qcow) | Should -BeNullOrEmpty
        @($removed.RemovedDiskSnapshots.SnapshotId | Sort-Object) | Should -Be @(@($s1.Id, $s2.Id) | Sort-Object)
        ($verbose.Message -match [regex]::Escape($qcow)).Count | Should -Be 2
        Get-KvmVm rm-cp -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'takes VM objects by value and names by property name' {
        New-KvmTestVm -Name rm-p1 | Out-Null
        New-KvmTestVm -Name rm-p2 | Out-Null
        New-KvmTestVm -Name rm-p3 | Out-Null
        Get-KvmVm rm-p1 | Remove-KvmVm -Confirm:$false
        [pscustomobject]@{ Name = 'rm-p2' }, [pscustomobject]@{ VMName = 'rm-p3' } | Remove-KvmVm -Confirm:$false
        Get-KvmVm 'rm-p*' | Should -BeNullOrEmpty
    }

    It 'removes every VM a wildcard selects' {
        New-KvmTestVm -Name rm-w1 | Out-Null
        New-KvmTestVm -Name rm-w2 | Out-Null
        Remove-KvmVm 'rm-w*' -Confirm:$false
        Get-KvmVm 'rm-w*' | Should -BeNullOrEmpty
    }

    It '-WhatIf removes nothing and says the disks would be deleted' {
        New-KvmTestVm -Name rm-whatif | Out-Null
        $lines = Get-KvmWhatIfLine { Remove-KvmVm rm-whatif -WhatIf; Remove-KvmVm rm-whatif -KeepDisks -WhatIf }
        $lines[0] | Should -Match 'target "rm-whatif"'
        $lines[0] | Should -Match 'delete'
        $lines[0] | Should -Match 'checkpoints'
        $lines[1] | Should -Match 'keep'
        (Get-KvmVm rm-whatif).Name | Should -Be 'rm-whatif'
    }

    It 'asks for confirmation by default (ConfirmImpact High); a non-interactive session gets a clear error, not UnexpectedError' -Tag 'Issue9' {
        $child = Invoke-KvmChildPwsh -Script @'
Remove-KvmVm rm-whatif
'ID=' + $Error[0].FullyQualifiedErrorId
'MSG=' + "$($Error[0])"
'@
        $id = ($child.Output | Where-Object { $_ -like 'ID=*' }) -replace '^ID='
        $id | Should -Not -BeNullOrEmpty -Because "the prompt cannot be shown (output: $($child.Output -join ' | '))"
        $id | Should -Not -BeLike 'UnexpectedError*'
        ($child.Output | Where-Object { $_ -like 'MSG=*' }) | Should -Match 'interactive|confirm'
        (Get-KvmVm rm-whatif).Name | Should -Be 'rm-whatif' -Because 'nothing was confirmed'
    }

    It 'reports a missing VM as ObjectNotFound; a wildcard matching nothing is silent' {
        Remove-KvmVm nosuch -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Remove-KvmVm -Category ObjectNotFound -TargetObject 'nosuch'
        Remove-KvmVm 'nosuch*' -Confirm:$false -ErrorVariable err
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Remove-KvmVm | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Remove-KvmVm rm-wh' | Should -Be @('rm-whatif')
    }
}
