#requires -Version 7.4
<#
.SYNOPSIS
    KvmPS build tasks for pwsh. Every task also runs without pwsh through ./build.sh (plain dotnet + apt).
.PARAMETER Task
    Setup   install the Debian packages (root)
    Build   build the solution, publish kvmps-vmm (NativeAOT) and the module folder into out/
    Test    Build, then the xunit suites and the Pester tests
    Pester  only the Pester tests (tests/*.Tests.ps1), against the module in out/KvmPS
    Publish the module folder out/KvmPS (KvmPS.psd1, KvmPS.dll, help, formats)
    Demo    the README's main job
#>
[CmdletBinding()]
param(
    [ValidateSet('Setup', 'Build', 'Test', 'Pester', 'Publish', 'Demo')]
    [string] $Task = 'Build'
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot

function Invoke-Pester-Tests {
    $pester = Get-Module -ListAvailable Pester | Sort-Object Version -Descending | Select-Object -First 1
    if (-not $pester) { Write-Warning 'Pester is not installed; skipping the Pester tests.'; return }
    Import-Module $pester
    $env:KVMPS_VMM = Join-Path $PSScriptRoot 'out/bin/kvmps-vmm'
    $config = New-PesterConfiguration
    $config.Run.Path = Join-Path $PSScriptRoot 'tests'
    $config.Run.Exit = $true
    $config.Output.Verbosity = 'Detailed'
    Invoke-Pester -Configuration $config
}

switch ($Task) {
    'Setup'   { & ./build.sh setup; if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    'Build'   { & ./build.sh build; if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    'Publish' { & ./build.sh build; if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    'Test'    { & ./build.sh test;  if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    'Pester'  { Invoke-Pester-Tests }
    'Demo'    { & ./build.sh demo;  if ($LASTEXITCODE) { exit $LASTEXITCODE } }
}
