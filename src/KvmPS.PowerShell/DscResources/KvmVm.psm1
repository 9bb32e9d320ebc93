# KvmVm: a class-based DSC resource (PSDesiredStateConfiguration v2, Invoke-DscResource) for one KvmPS VM.
# Properties follow HyperVDsc's VMHyperV. Get/Test/Set go through `kvmps dsc get|test|set`, the same JSON
# path as the DSC v3 resource KvmPS/VirtualMachine, so both resources behave identically (docs/cli.md).
#
#   Invoke-DscResource -Name KvmVm -ModuleName KvmPS -Method Set -Property @{
#       Name = 'web1'; Ensure = 'Present'; State = 'Running'; StartupMemory = 256MB; ProcessorCount = 2 }
#
# kvmps is found through $env:KVMPS_CLI, next to this module (../bin/kvmps or ../kvmps), or on PATH.

enum KvmVmEnsure {
    Present
    Absent
}

enum KvmVmState {
    Running
    Off
    Paused
}

function Get-KvmCliPath {
    if ($env:KVMPS_CLI) { return $env:KVMPS_CLI }
    $candidates = @(
        (Join-Path $PSScriptRoot '..' 'bin' 'kvmps')
        (Join-Path $PSScriptRoot '..' 'kvmps')
        (Join-Path $PSScriptRoot '..' '..' 'bin' 'kvmps')
    )
    foreach ($candidate in $candidates) {
        if (Test-Path -LiteralPath $candidate -PathType Leaf) { return (Resolve-Path -LiteralPath $candidate).ProviderPath }
    }
    $command = Get-Command -Name 'kvmps' -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if ($command) { return $command.Source }
    throw "KvmVm: cannot find the kvmps executable. Set `$env:KVMPS_CLI to its path, or put it on PATH."
}

# Runs `kvmps dsc <operation>` with the instance JSON on stdin; returns the output lines (state, then diff).
function Invoke-KvmDsc {
    param(
        [Parameter(Mandatory)][ValidateSet('get', 'test', 'set')][string] $Operation,
        [Parameter(Mandatory)][hashtable] $Instance
    )
    $json = $Instance | ConvertTo-Json -Compress -Depth 4
    $cli = Get-KvmCliPath
    $errorFile = [System.IO.Path]::GetTempFileName()
    try {
        $output = @($json | & $cli 'dsc' $Operation 2> $errorFile)
        $code = $LASTEXITCODE
        $stderr = (Get-Content -LiteralPath $errorFile -Raw -ErrorAction SilentlyContinue)
    }
    finally {
        Remove-Item -LiteralPath $errorFile -Force -ErrorAction SilentlyContinue
    }
    if ($code -ne 0) {
        $message = if ($stderr) { $stderr.Trim() } else { "kvmps dsc $Operation exited with status $code" }
        throw "KvmVm: $message (exit status $code)"
    }
    return $output
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
        $lines = Invoke-KvmDsc -Operation get -Instance @{ Name = $this.Name }
        $actual = $lines[0] | ConvertFrom-Json
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
        $lines = Invoke-KvmDsc -Operation test -Instance $this.ToInstance()
        $reply = $lines[0] | ConvertFrom-Json
        if (-not $reply._inDesiredState -and $lines.Count -gt 1) {
            Write-Verbose ("KvmVm '{0}': not in the desired state: {1}" -f $this.Name, (($lines[1] | ConvertFrom-Json) -join ', '))
        }
        return [bool]$reply._inDesiredState
    }

    [void] Set() {
        $lines = Invoke-KvmDsc -Operation set -Instance $this.ToInstance()
        if ($lines.Count -gt 1) {
            Write-Verbose ("KvmVm '{0}': changed {1}" -f $this.Name, (($lines[1] | ConvertFrom-Json) -join ', '))
        }
    }
}
