#Requires -Version 7.4
# Connect-KvmConsole: attaching a terminal (a pseudo-terminal from script(1)) to the built-in guest's serial
# console, typing to it, detaching with Ctrl-]; the errors without a terminal or a running VM; help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    New-KvmTestVm -Name con-a -Start | Out-Null
    New-KvmTestVm -Name con-off | Out-Null

    <#
        Runs Connect-KvmConsole in a child pwsh on a pseudo-terminal (script -q -f -e -c), feeds it $Keys once it
        says it is connected, and returns what the terminal showed. Ends the session after $TimeoutSec.
    #>
    function Invoke-ConsoleSession([string] $Name, [string[]] $Keys, [int] $TimeoutSec = 20) {
        foreach ($tool in 'script', 'timeout', 'bash') {
            if (-not (Get-Command $tool -CommandType Application -ErrorAction SilentlyContinue)) {
                throw "This test needs '$tool' (util-linux/coreutils/bash) to give Connect-KvmConsole a pseudo-terminal."
            }
        }
        $dir = $env:KVMPS_HOME
        $child = Join-Path $dir 'console.ps1'
        $log = Join-Path $dir ('console-' + [guid]::NewGuid().ToString('N').Substring(0, 6) + '.log')
        Set-Content -LiteralPath $child -Encoding utf8NoBOM -Value @"
Import-Module '$(Get-KvmTestModulePath)' -ErrorAction Stop
Connect-KvmConsole -Name $Name
'CONSOLE-EXIT state=' + (Get-KvmVm $Name).State
"@
        $pwsh = (@(Get-KvmTestPwsh) + '-NoProfile', '-NonInteractive', '-File', $child | ForEach-Object { "'$_'" }) -join ' '
        $feed = ($Keys | ForEach-Object { "sleep 1; printf '$_'" }) -join '; '
        $driver = Join-Path $dir 'console.sh'
        Set-Content -LiteralPath $driver -Encoding utf8NoBOM -Value @"
log='$log'
(
  for i in `$(seq 1 300); do grep -q 'Ctrl-]' "`$log" 2>/dev/null && break; sleep 0.1; done
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

AfterAll { Complete-KvmTest }

Describe 'Connect-KvmConsole' {
    It 'refuses a VM that is not running, naming it' {
        Connect-KvmConsole con-off -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId InvalidVmState -Command Connect-KvmConsole -Category InvalidOperation -TargetObject 'con-off'
        "$($err[0])" | Should -Match 'Get-KvmConsoleLog'
    }

    It 'refuses to attach without an interactive terminal with a stable error id, not UnexpectedError' -Tag 'Issue9' {
        # Standard input of the child is redirected (as in CI or a pipeline).
        $child = Invoke-KvmChildPwsh -Script @'
Connect-KvmConsole con-a -ErrorAction SilentlyContinue -ErrorVariable e
'ID=' + $e[0].FullyQualifiedErrorId
'CATEGORY=' + $e[0].CategoryInfo.Category
'MSG=' + "$($e[0])"
'@
        ($child.Output -match '^MSG=') | Should -Match 'interactive terminal'
        $id = ($child.Output -match '^ID=') -replace '^ID='
        $id | Should -BeLike '*,KvmPS.Commands.ConnectKvmConsoleCommand'
        $id | Should -Not -BeLike 'UnexpectedError,*'
        ($child.Output -match '^CATEGORY=') | Should -Not -Be 'CATEGORY=NotSpecified'
        (Get-KvmVm con-a).State | Should -Be 'Running'
    }

    It 'attaches a terminal to the console, passes keys to the guest and detaches on Ctrl-]' -Tag 'Issue9' {
        $screen = Invoke-ConsoleSession -Name con-a -Keys 'x', '\r', '\035'
        $screen | Should -Match "Connected to the console of VM 'con-a'"
        $screen | Should -Match 'KvmPS built-in guest' -Because 'the last console output is replayed first'
        $screen | Should -Match 'unknown command: x' -Because 'the typed key and Enter reach the guest'
        $screen | Should -Match "Detached from VM 'con-a'" -Because "Ctrl-] detaches (screen:`n$screen)"
        $screen | Should -Match 'CONSOLE-EXIT state=Running' -Because 'the VM keeps running after a detach'
        (Get-KvmVm con-a).State | Should -Be 'Running'
    }

    It 'reports a missing VM as ObjectNotFound' {
        Connect-KvmConsole nosuch -ErrorVariable err -ErrorAction SilentlyContinue
        Assert-KvmError $err -ErrorId VmNotFound -Command Connect-KvmConsole -Category ObjectNotFound -TargetObject 'nosuch'
    }

    It 'has full help' {
        Assert-KvmHelp Connect-KvmConsole | Out-Null
    }

    It 'completes VM names' {
        Get-KvmCompletion 'Connect-KvmConsole con-' | Should -Be @('con-a', 'con-off')
    }
}

Describe 'Connect-KvmConsole -Graphics' {
    It 'prints how to connect a VNC viewer and outputs the addresses' {
        New-KvmVm -Definition @{ Name = 'con-gfx'; MemoryStartupBytes = 64MB; Display = @{ Vnc = '127.0.0.1:5961' } } -Confirm:$false | Out-Null
        $endpoints = Connect-KvmConsole con-gfx -Graphics -WarningVariable warn -WarningAction SilentlyContinue
        # The same lines are printed to the host (a child pwsh shows them: the console cannot embed a viewer).
        $endpoints.ViewerCommands[0] | Should -Match 'vncviewer .*/vms/con-gfx/vnc\.sock'
        $endpoints.ViewerCommands[1] | Should -Be 'vncviewer 127.0.0.1:5961'
        $child = Invoke-KvmChildPwsh 'Connect-KvmConsole con-gfx -Graphics -WarningAction SilentlyContinue | Out-Null'
        ($child.Output -join "`n") | Should -Match 'vncviewer 127\.0\.0\.1:5961'
        $endpoints.Running | Should -BeFalse
        "$warn" | Should -Match 'not running'
    }

    It 'refuses a VM without a display' {
        Connect-KvmConsole con-off -Graphics -ErrorVariable err -ErrorAction SilentlyContinue
        "$($err[0])" | Should -Match 'has no display'
    }
}
