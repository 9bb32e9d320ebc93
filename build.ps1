#requires -Version 7.4
<#
.SYNOPSIS
    KvmPS build tasks for pwsh. Every task also runs without pwsh through ./build.sh (plain dotnet + apt).
.PARAMETER Task
    Setup   install the Debian packages (root), pwsh 7.6.10 and Pester 5.7.1 into .tools/
    Build   build the solution, publish kvmps-vmm (NativeAOT) and the module folder into out/
    Test    Build, then the xunit suites and the Pester tests
    Pester  only the Pester tests (tests/Pester), against the module in out/KvmPS
    Publish the module folder out/KvmPS (KvmPS.psd1, KvmPS.dll, help, formats, bin/) and out/packages/KvmPS.*.nupkg
    Demo    the README's main job
#>
[CmdletBinding()]
param(
    [ValidateSet('Setup', 'Build', 'Test', 'Pester', 'Publish', 'Demo')]
    [string] $Task = 'Build'
)
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot

# The Pester tests (tests/Pester, one file per cmdlet) against the published module in out/KvmPS, which finds
# its own bin/kvmps-vmm. Ends with "pester: N passed, N failed, N skipped", which ./build.sh test adds to its total.
function Invoke-PesterTests {
    $tools = Join-Path $PSScriptRoot '.tools/modules'
    if ((Test-Path $tools) -and ($env:PSModulePath -split [IO.Path]::PathSeparator) -notcontains $tools) {
        $env:PSModulePath = $tools + [IO.Path]::PathSeparator + $env:PSModulePath
    }
    $pester = Get-Module -ListAvailable Pester | Where-Object Version -ge '5.7.1' | Sort-Object Version -Descending | Select-Object -First 1
    if (-not $pester) { throw "Pester 5.7.1 or later is not installed: run './build.sh setup' (it installs it into .tools/modules)." }
    $module = Join-Path $PSScriptRoot 'out/KvmPS/KvmPS.psd1'
    if (-not (Test-Path $module)) { throw "The module is not published at ${module}: run './build.sh build' first." }
    Import-Module $pester -ErrorAction Stop
    Remove-Item Env:KVMPS_VMM -ErrorAction SilentlyContinue
    $env:KVMPS_MODULE_PATH = $module
    $config = New-PesterConfiguration
    $config.Run.Path = Join-Path $PSScriptRoot 'tests/Pester'
    $config.Run.PassThru = $true
    $config.Output.Verbosity = if ($env:CI) { 'Normal' } else { 'Detailed' }
    $result = Invoke-Pester -Configuration $config
    # Blocks and files that failed outside a test (BeforeAll, discovery) count as failures too.
    $failed = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
    "pester: $($result.PassedCount) passed, $failed failed, $($result.SkippedCount + $result.NotRunCount) skipped"
    if ($failed -gt 0 -or $result.PassedCount -eq 0) { exit 1 }
}

switch ($Task) {
    'Setup'   { & ./build.sh setup; if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    'Build'   { & ./build.sh build; if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    'Publish' { & ./build.sh build; if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    'Test'    { & ./build.sh test;  if ($LASTEXITCODE) { exit $LASTEXITCODE } }
    'Pester'  { Invoke-PesterTests }
    'Demo'    { & ./build.sh demo;  if ($LASTEXITCODE) { exit $LASTEXITCODE } }
}
