#Requires -Version 7.4
# -HostName on Connect-KvmConsole, Get-KvmConsoleLog, Get-KvmVmScreenshot, New-KvmDiskImage and Export-KvmDesiredState
# (docs/remote.md), against two namespace hosts with real sshds (TwoHosts.psm1): the cmdlets run in this (the root)
# namespace and reach h2 through an ssh that runs in h1's. The console runs on a pseudo-terminal from script(1).

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TwoHosts.psm1') -Force
    $script:LocalStore = Initialize-KvmTest
    $script:SkipReason = Get-KvmTestHostPairSkipReason
    $script:Pair = $null
    $script:Saved = @{ Ssh = $env:KVMPS_SSH; Config = $env:KVMPS_SSH_CONFIG }
    if (-not $script:SkipReason) {
        $bin = Join-Path (Split-Path (Get-Module KvmPS).Path) 'bin'
        $script:Pair = New-KvmTestHostPair -BinDirectory $bin
        $env:KVMPS_SSH = $script:Pair.SshFromHost1
        $env:KVMPS_SSH_CONFIG = $script:Pair.SshConfigPath
        $script:H2 = $script:Pair.Host2.Address
        $script:Remote = @{ HostName = $script:H2; UserName = 'root'; KeyFilePath = $script:Pair.ClientKeyPath }
        # VMs in h2's store only: rc-a runs (its console prints the guest's banner and "ready"), rc-off never ran.
        $env:KVMPS_HOME = $script:Pair.Host2.StoreHome
        try {
            New-KvmTestVm -Name rc-a | Out-Null
            New-KvmTestVm -Name rc-off | Out-Null
        }
        finally { $env:KVMPS_HOME = $script:LocalStore }
        Start-KvmVm -Name rc-a @script:Remote -Confirm:$false -ErrorAction Stop
        $deadline = [DateTime]::UtcNow.AddSeconds(30)
        while ([DateTime]::UtcNow -lt $deadline -and -not (@(Get-KvmConsoleLog rc-a @script:Remote) -contains 'ready')) { Start-Sleep -Milliseconds 200 }
    }

    <#
        Runs Connect-KvmConsole -HostName in a child pwsh on a pseudo-terminal (script -q -f -e -c), feeds it $Keys once
        the remote console says it is connected, and returns what the terminal showed. Ends the session after $TimeoutSec.
    #>
    function Invoke-RemoteConsoleSession([string] $Name, [string[]] $Keys, [int] $TimeoutSec = 30) {
        $dir = $script:Pair.Directory
        $child = Join-Path $dir 'console.ps1'
        $log = Join-Path $dir ('console-' + [guid]::NewGuid().ToString('N').Substring(0, 6) + '.log')
        Set-Content -LiteralPath $child -Encoding utf8NoBOM -Value @"
Import-Module '$(Get-KvmTestModulePath)' -ErrorAction Stop
`$remote = @{ HostName = '$($script:H2)'; UserName = 'root'; KeyFilePath = '$($script:Pair.ClientKeyPath)' }
Connect-KvmConsole -Name $Name @remote
'CONSOLE-EXIT state=' + (Get-KvmVm -Name $Name @remote).State + ' host=' + (Get-KvmVm -Name $Name @remote).HostName
"@
        $pwsh = (@(Get-KvmTestPwsh) + '-NoProfile', '-NonInteractive', '-File', $child | ForEach-Object { "'$_'" }) -join ' '
        $feed = ($Keys | ForEach-Object { "sleep 1; printf '$_'" }) -join '; '
        $driver = Join-Path $dir 'console.sh'
        # "Ctrl-]" is in the remote kvmps's own connected message: keys go once the far end reads the terminal.
        Set-Content -LiteralPath $driver -Encoding utf8NoBOM -Value @"
log='$log'
(
  for i in `$(seq 1 300); do grep -qE 'Ctrl-\]|CONSOLE-EXIT' "`$log" 2>/dev/null && break; sleep 0.1; done
  $feed
  for i in `$(seq 1 $($TimeoutSec * 10)); do grep -q 'CONSOLE-EXIT' "`$log" && break; sleep 0.1; done
) | timeout $TimeoutSec script -q -f -e -c "$($pwsh -replace '"', '\"')" "`$log" > /dev/null
"@
        & bash $driver
        $text = Get-Content -LiteralPath $log -Raw -ErrorAction SilentlyContinue
        Remove-Item -LiteralPath $log, $child, $driver -ErrorAction SilentlyContinue
        $text
    }
}

AfterAll {
    if ($script:Pair) {
        Get-KvmVm @script:Remote -ErrorAction SilentlyContinue | Where-Object IsActive | Stop-KvmVm -TurnOff -Confirm:$false -ErrorAction SilentlyContinue
    }
    Remove-KvmTestHostPair $script:Pair
    $env:KVMPS_SSH = $script:Saved.Ssh
    $env:KVMPS_SSH_CONFIG = $script:Saved.Config
    Complete-KvmTest
}

Describe '-HostName on the console, file and manifest cmdlets' {
    BeforeEach {
        if ($script:SkipReason) { Set-ItResult -Skipped -Because $script:SkipReason }
    }

    It 'Get-KvmConsoleLog -HostName outputs the console lines of the VM there; -Tail and the pipeline as here' {
        $lines = @(Get-KvmConsoleLog -Name rc-a @script:Remote -ErrorAction Stop)
        $lines | Should -Contain 'ready'
        ($lines -match '^KvmPS built-in guest') | Should -Not -BeNullOrEmpty
        $lines | Should -BeOfType ([string])
        $tail = @(Get-KvmConsoleLog -Name rc-a -Tail 2 @script:Remote)
        $tail.Count | Should -Be 2
        @(Get-KvmConsoleLog -Name rc-a -Tail 0 @script:Remote).Count | Should -Be 0
        # A remote VM object carries its host into the next cmdlet.
        (Get-KvmVm -Name rc-a @script:Remote | Get-KvmConsoleLog) | Should -Contain 'ready'
        Get-KvmConsoleLog -Name rc-off @script:Remote -ErrorVariable err | Should -BeNullOrEmpty
        $err | Should -BeNullOrEmpty
        # This host has no such VM.
        Get-KvmConsoleLog -Name rc-a -ErrorAction SilentlyContinue -ErrorVariable err
        Assert-KvmError $err -ErrorId VmNotFound -Command Get-KvmConsoleLog -Category ObjectNotFound -TargetObject 'rc-a'
    }

    It 'Get-KvmConsoleLog -HostName reports a VM missing there as VmNotFound naming the host' {
        Get-KvmConsoleLog -Name nosuch @script:Remote -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Get-KvmConsoleLog -Category ObjectNotFound -TargetObject 'nosuch'
        "$($err[0])" | Should -Match ([regex]::Escape($script:H2))
    }

    It 'the remote cmdlets refuse a host or user that ssh would read as an option, before ssh runs' {
        foreach ($call in @(
                { Get-KvmConsoleLog -Name rc-a -HostName '-oProxyCommand=touch /tmp/kv-pwned' -ErrorAction Stop },
                { Export-KvmDesiredState -HostName $script:H2 -UserName '-oProxyCommand=x' -ErrorAction Stop },
                { New-KvmDiskImage -Path /tmp/x.img -SizeBytes 1MB -HostName '-F/etc/passwd' -Confirm:$false -ErrorAction Stop },
                { Get-KvmVmScreenshot -Name rc-a -Path /tmp/x.png -HostName '-oX=y' -ErrorAction Stop },
                { Connect-KvmConsole -Name rc-a -HostName '-oProxyCommand=x' -ErrorAction Stop })) {
            $e = { & $call } | Should -Throw -PassThru
            $e.FullyQualifiedErrorId | Should -BeLike 'InvalidValue,*'
            "$e" | Should -Match 'HostName|UserName'
        }
        Test-Path /tmp/kv-pwned | Should -BeFalse
    }

    It 'Export-KvmDesiredState -HostName returns the manifest of that host naming it, and Test-KvmDesiredState runs it there' {
        $text = Export-KvmDesiredState @script:Remote -ErrorAction Stop
        $text | Should -BeOfType ([string])
        $text | Should -Match "HostName = '$([regex]::Escape($script:H2))'"
        $text | Should -Match "Name\s+= 'rc-a'"
        $text | Should -Match "Name\s+= 'rc-off'"
        # Only the names asked for; one that matches none there is an error naming it, the others still exported.
        $file = Join-Path $script:LocalStore 'h2.psd1'
        $item = Export-KvmDesiredState -Name rc-off, nosuch -Path $file -PassThru @script:Remote -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Export-KvmDesiredState -Category ObjectNotFound -TargetObject 'nosuch'
        $item.FullName | Should -Be $file
        $written = Get-Content -Raw $file
        $written | Should -Match "Name\s+= 'rc-off'"
        $written | Should -Not -Match "Name\s+= 'rc-a'"
        # The file names h2, so testing it runs there (here the VM does not exist, so it would drift).
        Test-KvmDesiredState $file -UserName root -KeyFilePath $script:Pair.ClientKeyPath | Should -BeTrue
        # Names piped from Get-KvmVm -HostName bring the host with them.
        $piped = Get-KvmVm -Name rc-a @script:Remote | Export-KvmDesiredState
        $piped | Should -Match "Name\s+= 'rc-a'"
        $piped | Should -Match "HostName = '$([regex]::Escape($script:H2))'"
    }

    It 'Export-KvmDesiredState refuses VMs of two hosts in one manifest' {
        $objects = @([pscustomobject]@{ Name = 'rc-a'; HostName = $script:H2; UserName = 'root'; KeyFilePath = $script:Pair.ClientKeyPath }, [pscustomobject]@{ Name = 'x' })
        $objects | Export-KvmDesiredState -ErrorVariable err -ErrorAction SilentlyContinue | Out-Null
        "$($err[0])" | Should -Match 'one manifest describes one host'
    }

    It 'New-KvmDiskImage -HostName creates the image there and the object names the host' {
        $image = New-KvmDiskImage -Path data.qcow2 -Pool default -SizeBytes 8MB @script:Remote -Confirm:$false -ErrorAction Stop
        $image.HostName | Should -Be $script:H2
        $image.pstypenames[0] | Should -Be 'KvmPS.RemoteDiskImage'
        $image.Format | Should -Be 'qcow2'
        $image.SizeBytes | Should -Be 8MB
        # The pool is h2's: its folder is in h2's store.
        $image.Path | Should -BeLike "$($script:Pair.Host2.StoreHome)*"
        Test-Path $image.Path | Should -BeTrue
        # A path: that host's, sent as given; the same checks as here, done there.
        $path = Join-Path $script:Pair.Directory 'r-raw.img'
        $raw = New-KvmDiskImage -Path $path -SizeBytes 1MB @script:Remote -Confirm:$false -ErrorAction Stop
        $raw.Path | Should -Be $path
        $raw.Format | Should -Be 'raw'
        $raw.SizeBytes | Should -Be 1MB
        Test-Path $path | Should -BeTrue
        New-KvmDiskImage -Path $path -SizeBytes 1MB @script:Remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId RemoteCommandFailed -Command New-KvmDiskImage -Category InvalidOperation -NoTarget
        "$($err[0])" | Should -Match 'already exists'
        New-KvmDiskImage -Path (Join-Path $script:Pair.Directory 'odd.img') -SizeBytes 1000 @script:Remote -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match '--size'
        # -WhatIf runs nothing there.
        New-KvmDiskImage -Path (Join-Path $script:Pair.Directory 'w.img') -SizeBytes 1MB @script:Remote -WhatIf
        Test-Path (Join-Path $script:Pair.Directory 'w.img') | Should -BeFalse
    }

    It 'Get-KvmVmScreenshot -HostName refuses a VM without a display there, and -WhatIf runs nothing' {
        $png = Join-Path $script:LocalStore 'r.png'
        Get-KvmVmScreenshot -Name rc-a -Path $png @script:Remote -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId RemoteCommandFailed -Command Get-KvmVmScreenshot -Category InvalidOperation -TargetObject 'rc-a'
        "$($err[0])" | Should -Match 'has no display'
        Test-Path $png | Should -BeFalse
        $lines = Get-KvmWhatIfLine { Get-KvmVmScreenshot -Name rc-a -Path $png @script:Remote -WhatIf }
        $lines | Should -Match ([regex]::Escape($script:H2))
    }

    It 'Get-KvmVmScreenshot -HostName saves the screen of a VM there as a PNG here' {
        New-KvmVm -Definition @{ Name = 'rc-disp'; MemoryStartupBytes = 64MB; Display = @{ Vnc = 'unix' } } @script:Remote -Confirm:$false -ErrorAction Stop | Out-Null
        Start-KvmVm -Name rc-disp @script:Remote -Confirm:$false -ErrorAction Stop
        $png = Join-Path $script:LocalStore 'screen.png'
        $shot = Get-KvmVmScreenshot -Name rc-disp -Path $png -PassThru @script:Remote -Confirm:$false -ErrorAction Stop
        $shot.HostName | Should -Be $script:H2
        $shot.VmName | Should -Be 'rc-disp'
        $shot.Path | Should -Be $png
        $shot.Width | Should -BeGreaterThan 0
        $bytes = [System.IO.File]::ReadAllBytes($png)
        [System.Text.Encoding]::ASCII.GetString($bytes, 1, 3) | Should -Be 'PNG'
        # The PNG's header holds the same size (big-endian width at byte 16).
        [System.Buffers.Binary.BinaryPrimitives]::ReadInt32BigEndian([byte[]]$bytes[16..19]) | Should -Be $shot.Width
        Stop-KvmVm -Name rc-disp -TurnOff @script:Remote -Confirm:$false
    }

    It 'Connect-KvmConsole -HostName attaches this terminal to the console there, passes keys and detaches on Ctrl-]' {
        $screen = Invoke-RemoteConsoleSession -Name rc-a -Keys 'x', '\r', '\035'
        $screen | Should -Match "Connected to the console of VM 'rc-a'"
        $screen | Should -Match 'KvmPS built-in guest' -Because 'the last console output is replayed first'
        $screen | Should -Match 'unknown command: x' -Because 'the typed key and Enter reach the guest there'
        $screen | Should -Match "Detached from VM 'rc-a'" -Because "Ctrl-] detaches (screen:`n$screen)"
        $screen | Should -Match "CONSOLE-EXIT state=Running host=$([regex]::Escape($script:H2))" -Because 'the VM there keeps running after a detach'
    }

    It 'Connect-KvmConsole -HostName refuses redirected input, and reports a VM that is not running there' {
        $child = Invoke-KvmChildPwsh -Script @"
Connect-KvmConsole rc-a -HostName '$($script:H2)' -UserName root -KeyFilePath '$($script:Pair.ClientKeyPath)' -ErrorAction SilentlyContinue -ErrorVariable e
'ID=' + `$e[0].FullyQualifiedErrorId
'MSG=' + "`$(`$e[0])"
"@
        ($child.Output -match '^MSG=') | Should -Match 'interactive terminal'
        ($child.Output -match '^ID=') | Should -Not -Match 'UnexpectedError'
        $screen = Invoke-RemoteConsoleSession -Name rc-off -Keys @() -TimeoutSec 20
        $screen | Should -Match "VM 'rc-off' is Off; only a running or paused VM has a console" -Because 'the remote kvmps says why on the terminal'
        $screen | Should -Match 'CONSOLE-EXIT state=Off'
    }
}
