using module ../../out/KvmPS/DscResources/KvmVm.psm1
#Requires -Version 7.4
<#
    The DSC v2 class resource KvmVm, executed the way class-resource projects test theirs (PSDesiredStateConfiguration
    and Invoke-DscResource are not available here): `using module` on the published out/KvmPS/DscResources/KvmVm.psm1,
    then Get(), Test() and Set() on instances, against real kvmps-vmm processes on the built-in guest in a private
    KVMPS_HOME. The class runs `kvmps dsc get|test|set`; kvmps is found next to the module (../../bin/kvmps here).
#>

BeforeAll {
    $script:repoRoot = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $script:modulePsm1 = Join-Path $repoRoot 'out/KvmPS/DscResources/KvmVm.psm1'
    $script:saved = @{ KVMPS_HOME = $env:KVMPS_HOME; KVMPS_CLI = $env:KVMPS_CLI }
    $env:KVMPS_HOME = (New-Item -ItemType Directory -Path ("/tmp/kd-" + [guid]::NewGuid().ToString('N').Substring(0, 6))).FullName
    Remove-Item Env:KVMPS_CLI -ErrorAction SilentlyContinue

    function script:New-KvmVmResource([hashtable] $Property) {
        $resource = [KvmVm]::new()
        foreach ($key in $Property.Keys) { $resource.$key = $Property[$key] }
        $resource
    }
}

AfterAll {
    if ($env:KVMPS_HOME -and $env:KVMPS_HOME -like '/tmp/kd-*') {
        foreach ($name in 'dsc-a', 'dsc-b', 'dsc-off', 'dsc-gone') {
            try { (New-KvmVmResource @{ Name = $name; Ensure = 'Absent' }).Set() } catch { Write-Warning "cleanup of '$name': $_" }
        }
        Remove-Item -Recurse -Force $env:KVMPS_HOME -ErrorAction SilentlyContinue
    }
    $env:KVMPS_HOME = $saved.KVMPS_HOME
    if ($saved.KVMPS_CLI) { $env:KVMPS_CLI = $saved.KVMPS_CLI }
}

Describe 'KvmVm DSC resource module' {
    It 'imports in a fresh session with no error and no warning' {
        $pwsh = Join-Path $PSHOME pwsh
        $output = & $pwsh -NoProfile -NonInteractive -Command "Import-Module '$modulePsm1' -ErrorVariable e -WarningVariable w; `"`$(`$e.Count) `$(`$w.Count) `$((Get-Module KvmVm).Name)`"" 2>&1
        $LASTEXITCODE | Should -Be 0
        $output | Should -Be '0 0 KvmVm'
    }

    It 'declares the class as a DSC resource with Name as its key' {
        $attribute = [KvmVm].GetCustomAttributes($true) | Where-Object { $_.GetType().Name -eq 'DscResourceAttribute' }
        $attribute | Should -Not -BeNullOrEmpty
        $key = [KvmVm].GetProperty('Name').GetCustomAttributes($true) | Where-Object { $_.GetType().Name -eq 'DscPropertyAttribute' }
        $key.Key | Should -BeTrue
        foreach ($method in 'Get', 'Test', 'Set') { [KvmVm].GetMethod($method) | Should -Not -BeNullOrEmpty }
    }

    It 'is exported by the KvmPS module manifest' {
        (Import-PowerShellDataFile (Join-Path $repoRoot 'out/KvmPS/KvmPS.psd1')).DscResourcesToExport | Should -Contain 'KvmVm'
    }
}

Describe 'KvmVm Get/Test/Set against kvmps-vmm' {
    It 'Get() of a VM that does not exist returns Ensure Absent (a one-line reply)' {
        # The old class unrolled the one-line reply into a string and parsed '{' alone: every Get() threw.
        $state = (New-KvmVmResource @{ Name = 'dsc-a' }).Get()
        $state | Should -BeOfType ([KvmVm])
        $state.Name | Should -Be 'dsc-a'
        $state.Ensure | Should -Be ([KvmVmEnsure]::Absent)
        $state.CurrentState | Should -BeNullOrEmpty
        $state.ProcessId | Should -BeNullOrEmpty
    }

    It 'Test() is $false for a VM that should exist and does not' {
        (New-KvmVmResource @{ Name = 'dsc-a'; State = 'Running'; StartupMemory = 64MB }).Test() | Should -BeFalse
    }

    It 'Set() creates and starts the VM; Test() is then $true and Get() reports it' {
        $desired = New-KvmVmResource @{ Name = 'dsc-a'; State = 'Running'; StartupMemory = 64MB; ProcessorCount = 2; MaximumProcessorCount = 4; Notes = "from DSC: it's `"v2`"`n2024-01-01" }
        $desired.Set()
        $desired.Test() | Should -BeTrue

        $state = $desired.Get()
        $state.Ensure | Should -Be ([KvmVmEnsure]::Present)
        $state.State | Should -Be ([KvmVmState]::Running)
        $state.CurrentState | Should -Be 'Running'
        $state.StartupMemory | Should -Be 64MB
        $state.MinimumMemory | Should -Be 64MB
        $state.MaximumMemory | Should -Be 64MB
        $state.ProcessorCount | Should -Be 2
        $state.MaximumProcessorCount | Should -Be 4
        $state.Notes | Should -BeExactly "from DSC: it's `"v2`"`n2024-01-01"
        $state.Autostart | Should -BeFalse
        $state.KernelPath | Should -BeNullOrEmpty
        $state.ProcessId | Should -BeGreaterThan 0
        (Get-Process -Id $state.ProcessId).ProcessName | Should -Be 'kvmps-vmm'
    }

    It 'Set() again changes nothing (the VMM keeps running)' {
        $desired = New-KvmVmResource @{ Name = 'dsc-a'; State = 'Running'; StartupMemory = 64MB; ProcessorCount = 2; MaximumProcessorCount = 4 }
        $before = $desired.Get().ProcessId
        $desired.Set()
        $desired.Get().ProcessId | Should -Be $before
    }

    It 'Test() reports drift in processors; Set() without RestartIfNeeded stores it and keeps the VM running' {
        $desired = New-KvmVmResource @{ Name = 'dsc-a'; ProcessorCount = 3; MaximumProcessorCount = 4 }
        $desired.Test() | Should -BeFalse
        $before = $desired.Get().ProcessId
        $desired.Set()
        $desired.Test() | Should -BeTrue
        $state = $desired.Get()
        $state.ProcessorCount | Should -Be 3
        $state.ProcessId | Should -Be $before
    }

    It 'Set() with RestartIfNeeded restarts a running VM for a memory change' {
        $desired = New-KvmVmResource @{ Name = 'dsc-a'; State = 'Running'; StartupMemory = 128MB; RestartIfNeeded = $true }
        $desired.Test() | Should -BeFalse
        $before = $desired.Get().ProcessId
        $desired.Set()
        $desired.Test() | Should -BeTrue
        $state = $desired.Get()
        $state.StartupMemory | Should -Be 128MB
        $state.CurrentState | Should -Be 'Running'
        $state.ProcessId | Should -Not -Be $before
        $state.RestartIfNeeded | Should -BeTrue
    }

    It 'State Off stops the VM and State Running starts it again' {
        $off = New-KvmVmResource @{ Name = 'dsc-a'; State = 'Off' }
        $off.Test() | Should -BeFalse
        $off.Set()
        $off.Test() | Should -BeTrue
        $state = $off.Get()
        $state.State | Should -Be ([KvmVmState]::Off)
        $state.ProcessId | Should -BeNullOrEmpty

        $running = New-KvmVmResource @{ Name = 'dsc-a'; State = 'Running' }
        $running.Test() | Should -BeFalse
        $running.Set()
        $running.Get().CurrentState | Should -Be 'Running'
    }

    It 'State Paused suspends a running VM' {
        $paused = New-KvmVmResource @{ Name = 'dsc-a'; State = 'Paused' }
        $paused.Set()
        $paused.Test() | Should -BeTrue
        $paused.Get().CurrentState | Should -Be 'Paused'
    }

    It 'creates a VM that is only defined (State Off) without starting it' {
        $desired = New-KvmVmResource @{ Name = 'dsc-off'; State = 'Off'; StartupMemory = 32MB; Autostart = $true }
        $desired.Set()
        $state = $desired.Get()
        $state.Ensure | Should -Be ([KvmVmEnsure]::Present)
        $state.CurrentState | Should -Be 'Off'
        $state.Autostart | Should -BeTrue
    }

    It 'Ensure Absent: Test() is $false while the VM exists, Set() removes it (running or not)' {
        foreach ($name in 'dsc-a', 'dsc-off') {
            $absent = New-KvmVmResource @{ Name = $name; Ensure = 'Absent' }
            $absent.Test() | Should -BeFalse
            $absent.Set()
            $absent.Test() | Should -BeTrue
            $absent.Get().Ensure | Should -Be ([KvmVmEnsure]::Absent)
        }
        Get-Process -Name kvmps-vmm -ErrorAction SilentlyContinue |
            Where-Object { (Get-Content "/proc/$($_.Id)/cmdline" -Raw -ErrorAction SilentlyContinue) -like "*$env:KVMPS_HOME*" } |
            Should -BeNullOrEmpty
    }

    It 'Ensure Absent for a VM that does not exist is already in the desired state' {
        $absent = New-KvmVmResource @{ Name = 'dsc-gone'; Ensure = 'Absent' }
        $absent.Test() | Should -BeTrue
        { $absent.Set() } | Should -Not -Throw
    }
}

Describe 'KvmVm errors' {
    It 'rejects <Case> with an error naming it, and changes nothing' -ForEach @(
        @{ Case = 'zero processors'; Property = @{ Name = 'dsc-b'; ProcessorCount = 0; StartupMemory = 64MB }; Expected = '*ProcessorCount*at least 1*' }
        @{ Case = 'memory that is not a page multiple'; Property = @{ Name = 'dsc-b'; StartupMemory = 1000 }; Expected = '*StartupMemory*multiple of 4096*' }
        @{ Case = 'more processors than the maximum'; Property = @{ Name = 'dsc-b'; StartupMemory = 64MB; ProcessorCount = 4; MaximumProcessorCount = 2 }; Expected = '*ProcessorCount*' }
        @{ Case = 'a State for an absent VM'; Property = @{ Name = 'dsc-b'; Ensure = 'Absent'; State = 'Running' }; Expected = '*State*Absent*' }
        @{ Case = 'an invalid name'; Property = @{ Name = 'bad name' }; Expected = "*Name must be a VM name*" }
    ) {
        $resource = New-KvmVmResource $Property
        { $resource.Set() } | Should -Throw -ExpectedMessage $Expected
        { $resource.Test() } | Should -Throw -ExpectedMessage $Expected
        (New-KvmVmResource @{ Name = 'dsc-b' }).Get().Ensure | Should -Be ([KvmVmEnsure]::Absent)
    }

    It 'rejects an unknown enum value before running anything' {
        { New-KvmVmResource @{ Name = 'dsc-b'; State = 'Crashed' } } | Should -Throw
        { New-KvmVmResource @{ Name = 'dsc-b'; Ensure = 'Maybe' } } | Should -Throw
    }

    It 'says which file KVMPS_CLI names when it does not exist' {
        $env:KVMPS_CLI = '/nonexistent/kvmps'
        try {
            { (New-KvmVmResource @{ Name = 'dsc-b' }).Get() } | Should -Throw -ExpectedMessage "*KVMPS_CLI*'/nonexistent/kvmps'*not a file*"
        }
        finally { Remove-Item Env:KVMPS_CLI }
    }
}

Describe 'KvmVm finds kvmps in the module folder' {
    BeforeAll {
        # The installed package's layout: <module>/DscResources/KvmVm.psm1 and <module>/bin/kvmps (+ kvmps-vmm).
        $script:moduleCopy = Join-Path $TestDrive 'Modules/KvmPS/0.1.0'
        New-Item -ItemType Directory -Path (Join-Path $moduleCopy 'DscResources'), (Join-Path $moduleCopy 'bin') | Out-Null
        Copy-Item $modulePsm1 (Join-Path $moduleCopy 'DscResources')
        Copy-Item (Join-Path $repoRoot 'out/bin/*') (Join-Path $moduleCopy 'bin') -Recurse
        $script:copied = Import-Module (Join-Path $moduleCopy 'DscResources/KvmVm.psm1') -PassThru -Force -Prefix Copied
        $script:savedPath = $env:PATH
        # No kvmps on PATH, so only the module's bin/ can be found.
        $env:PATH = ($env:PATH -split ':' | Where-Object { -not (Test-Path (Join-Path $_ 'kvmps')) }) -join ':'
    }

    AfterAll {
        $env:PATH = $savedPath
        Remove-Module $copied -Force -ErrorAction SilentlyContinue
    }

    It 'uses bin/kvmps inside the module folder' {
        & $copied { Get-KvmCliPath } | Should -Be (Join-Path $moduleCopy 'bin/kvmps')
        & $copied { $r = [KvmVm]::new(); $r.Name = 'dsc-b'; $r.Get().Ensure } | Should -Be 'Absent'
    }

    It 'says so when the module''s bin/kvmps lost its execute bit' {
        $kvmps = Join-Path $moduleCopy 'bin/kvmps'
        $mode = (Get-Item $kvmps).UnixFileMode
        try {
            (Get-Item $kvmps).UnixFileMode = 'UserRead, UserWrite'
            { & $copied { Get-KvmCliPath } } | Should -Throw -ExpectedMessage "*$kvmps*not executable*chmod*"
        }
        finally { (Get-Item $kvmps).UnixFileMode = $mode }
    }
}
