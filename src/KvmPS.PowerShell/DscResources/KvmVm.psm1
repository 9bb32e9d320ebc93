# KvmVm: a class-based DSC resource (PSDesiredStateConfiguration v2, Invoke-DscResource) for one KvmPS VM.
# Properties follow HyperVDsc's VMHyperV. Get/Test/Set go through `kvmps dsc get|test|set`, the same JSON
# path as the DSC v3 resource KvmPS/VirtualMachine, so both resources behave identically (docs/cli.md).
#
#   Invoke-DscResource -Name KvmVm -ModuleName KvmPS -Method Set -Property @{
#       Name = 'web1'; Ensure = 'Present'; State = 'Running'; StartupMemory = 256MB; ProcessorCount = 2 }
#
# kvmps is found through $env:KVMPS_CLI, in the module's bin/ folder (the installed package), in the module folder,
# in the build layout's out/bin beside out/KvmPS, or on PATH.

enum KvmVmEnsure {
    Present
    Absent
}

enum KvmVmState {
    Running
    Off
    Paused
}

# Where kvmps may be, in order: the module's own bin/ (the installed package carries it there), the module
# folder itself, and the build layout's out/bin beside out/KvmPS. $PSScriptRoot is <module>/DscResources.
function Get-KvmCliCandidate {
    (Join-Path $PSScriptRoot '..' 'bin' 'kvmps')
    (Join-Path $PSScriptRoot '..' 'kvmps')
    (Join-Path $PSScriptRoot '..' '..' 'bin' 'kvmps')
}

function Test-KvmExecutable([string] $Path) {
    # A package extracted without Unix modes leaves the file there but not runnable; report it rather than skip it.
    $mode = (Get-Item -LiteralPath $Path).UnixFileMode
    return ($mode -band [System.IO.UnixFileMode]'UserExecute, GroupExecute, OtherExecute') -ne 0
}

function Get-KvmCliPath {
    if ($env:KVMPS_CLI) {
        if (-not (Test-Path -LiteralPath $env:KVMPS_CLI -PathType Leaf)) {
            throw "KvmVm: KVMPS_CLI is '$($env:KVMPS_CLI)', which is not a file."
        }
        return $env:KVMPS_CLI
    }
    $notExecutable = $null
    foreach ($candidate in Get-KvmCliCandidate) {
        if (-not (Test-Path -LiteralPath $candidate -PathType Leaf)) { continue }
        $full = (Resolve-Path -LiteralPath $candidate).ProviderPath
        if (Test-KvmExecutable $full) { return $full }
        if (-not $notExecutable) { $notExecutable = $full }
    }
    $command = Get-Command -Name 'kvmps' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($command) { return $command.Source }
    if ($notExecutable) {
        throw "KvmVm: '$notExecutable' is not executable (run: chmod +x '$notExecutable'), and no kvmps is on PATH."
    }
    throw "KvmVm: cannot find the kvmps executable (looked in: $((Get-KvmCliCandidate) -join ', ')). Set `$env:KVMPS_CLI to its path, or put it on PATH."
}

# Runs `kvmps dsc <operation>` with the instance JSON on stdin. The output (docs/cli.md) is one line of JSON with
# the state, and for test and set a second line with the JSON array of the properties that differ / changed.
# Returns one object, @{ State; Diff }, so a one-line reply is never unrolled into a string by the pipeline.
function Invoke-KvmDsc {
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)][ValidateSet('get', 'test', 'set')][string] $Operation,
        [Parameter(Mandatory)][System.Collections.IDictionary] $Instance
    )
    $json = $Instance | ConvertTo-Json -Compress -Depth 4
    $cli = Get-KvmCliPath
    $errorFile = [System.IO.Path]::GetTempFileName()
    try {
        $output = @($json | & $cli 'dsc' $Operation 2> $errorFile)
        $code = $LASTEXITCODE
        $stderr = Get-Content -LiteralPath $errorFile -Raw -ErrorAction SilentlyContinue
    }
    finally {
        Remove-Item -LiteralPath $errorFile -Force -ErrorAction SilentlyContinue
    }
    if ($code -ne 0) {
        $message = if ($stderr) { $stderr.Trim() } else { "kvmps dsc $Operation exited with status $code" }
        throw "KvmVm '$($Instance['Name'])': $message (kvmps dsc $Operation, exit status $code)"
    }
    $lines = @($output | ForEach-Object { "$_" } | Where-Object { $_.Trim() })
    $expected = if ($Operation -eq 'get') { 1 } else { 2 }
    if ($lines.Count -ne $expected) {
        throw "KvmVm '$($Instance['Name'])': kvmps dsc $Operation printed $($lines.Count) line(s), expected $expected (state$(if ($expected -eq 2) { ', diff' })): $($lines -join ' | ')"
    }
    try {
        # -DateKind String: a note that looks like a date stays the text it is.
        $state = ConvertFrom-Json -InputObject $lines[0] -DateKind String -ErrorAction Stop
        $diff = if ($expected -eq 2) { @(ConvertFrom-Json -InputObject $lines[1] -ErrorAction Stop) } else { @() }
    }
    catch {
        throw "KvmVm '$($Instance['Name'])': kvmps dsc $Operation printed something that is not JSON: $($_.Exception.Message)"
    }
    if ($state -isnot [pscustomobject] -or -not $state.PSObject.Properties['Ensure']) {
        throw "KvmVm '$($Instance['Name'])': kvmps dsc $Operation did not print a state object: $($lines[0])"
    }
    return [pscustomobject]@{ State = $state; Diff = [string[]]@($diff) }
}

[DscResource()]
class KvmVm {
    [DscProperty(Key)]
    [string] $Name

    [DscProperty()]
    [KvmVmEnsure] $Ensure = [KvmVmEnsure]::Present

    # Not enforced when not set.
    [DscProperty()]
    [Nullable[KvmVmState]] $State

    # Bytes. Also sets MinimumMemory/MaximumMemory unless they are given.
    [DscProperty()]
    [Nullable[uint64]] $StartupMemory

    [DscProperty()]
    [Nullable[uint64]] $MinimumMemory

    [DscProperty()]
    [Nullable[uint64]] $MaximumMemory

    [DscProperty()]
    [Nullable[int]] $ProcessorCount

    [DscProperty()]
    [Nullable[int]] $MaximumProcessorCount

    [DscProperty()]
    [string] $Notes

    [DscProperty()]
    [Nullable[bool]] $Autostart

    [DscProperty()]
    [string] $KernelPath

    [DscProperty()]
    [string] $InitrdPath

    [DscProperty()]
    [string] $KernelArguments

    # Restart a running VM when a change only takes effect at its next start.
    [DscProperty()]
    [bool] $RestartIfNeeded = $false

    # Read-only: the VM's live state as kvmps reports it (Running, Off, Paused, Crashed, ...).
    [DscProperty(NotConfigurable)]
    [string] $CurrentState

    [DscProperty(NotConfigurable)]
    [Nullable[int]] $ProcessId

    # The instance as kvmps dsc expects it: only the properties that are set.
    hidden [hashtable] ToInstance() {
        $instance = [ordered]@{ Name = $this.Name; Ensure = $this.Ensure.ToString() }
        if ($null -ne $this.State) { $instance.State = $this.State.ToString() }
        foreach ($property in 'StartupMemory', 'MinimumMemory', 'MaximumMemory', 'ProcessorCount', 'MaximumProcessorCount', 'Autostart') {
            if ($null -ne $this.$property) { $instance[$property] = $this.$property }
        }
        foreach ($property in 'Notes', 'KernelPath', 'InitrdPath', 'KernelArguments') {
            if ($null -ne $this.$property) { $instance[$property] = $this.$property }
        }
        if ($this.RestartIfNeeded) { $instance.RestartIfNeeded = $true }
        return [hashtable]$instance
    }

    [KvmVm] Get() {
        $actual = (Invoke-KvmDsc -Operation get -Instance @{ Name = $this.Name }).State
        $result = [KvmVm]::new()
        $result.Name = $this.Name
        $result.Ensure = [KvmVmEnsure]$actual.Ensure
        $result.RestartIfNeeded = $this.RestartIfNeeded
        if ($actual.Ensure -eq 'Present') {
            $result.CurrentState = $actual.State
            if ($actual.State -in 'Running', 'Off', 'Paused') { $result.State = [KvmVmState]$actual.State }
            $result.StartupMemory = [uint64]$actual.StartupMemory
            $result.MinimumMemory = [uint64]$actual.MinimumMemory
            $result.MaximumMemory = [uint64]$actual.MaximumMemory
            $result.ProcessorCount = [int]$actual.ProcessorCount
            $result.MaximumProcessorCount = [int]$actual.MaximumProcessorCount
            $result.Notes = $actual.Notes
            $result.Autostart = [bool]$actual.Autostart
            if ($actual.PSObject.Properties['KernelPath']) { $result.KernelPath = $actual.KernelPath }
            if ($actual.PSObject.Properties['InitrdPath']) { $result.InitrdPath = $actual.InitrdPath }
            if ($actual.PSObject.Properties['KernelArguments']) { $result.KernelArguments = $actual.KernelArguments }
            if ($actual.PSObject.Properties['ProcessId']) { $result.ProcessId = [int]$actual.ProcessId }
        }
        return $result
    }

    [bool] Test() {
        $reply = Invoke-KvmDsc -Operation test -Instance $this.ToInstance()
        $inDesiredState = $reply.State.PSObject.Properties['_inDesiredState']
        if (-not $inDesiredState) {
            throw "KvmVm '$($this.Name)': kvmps dsc test did not report _inDesiredState"
        }
        if (-not $inDesiredState.Value) {
            Write-Verbose ("KvmVm '{0}': not in the desired state: {1}" -f $this.Name, ($reply.Diff -join ', '))
        }
        return [bool]$inDesiredState.Value
    }

    [void] Set() {
        $reply = Invoke-KvmDsc -Operation set -Instance $this.ToInstance()
        if ($reply.Diff.Count -gt 0) {
            Write-Verbose ("KvmVm '{0}': changed {1}" -f $this.Name, ($reply.Diff -join ', '))
        }
    }
}
