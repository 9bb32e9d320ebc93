<#
    Shared set-up of the KvmPS Pester tests (tests/Pester/*.Tests.ps1). Every test file calls
    Initialize-KvmTest in its BeforeAll and Complete-KvmTest in its AfterAll:

      - a private store per file: $env:KVMPS_HOME = /tmp/kps-XXXXXXXX (short: VM control-socket paths must
        fit the 107 bytes of sun_path);
      - the module under test: $env:KVMPS_MODULE_PATH if set, else <repo>/out/KvmPS/KvmPS.psd1;
      - the VMM: $env:KVMPS_VMM if set, else <repo>/out/bin/kvmps-vmm;
      - every folder allowed for disks, kernels and firmware ($env:KVMPS_ALLOWED_PATHS = '/'): the tests use
        TestDrive: and made-up paths; a test of the allowed-paths setting narrows it itself (docs/confinement.md);
      - no silent skips: without /dev/kvm, the VMM or the module, set-up throws and every test of the file FAILS
        saying what is missing.

    The helpers below (views, errors, -WhatIf text, child sessions) use Pester's Should, so a failure points at
    the calling test.
#>

Set-StrictMode -Version 3.0

$script:RepoRoot = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
$script:Saved = $null

function Get-KvmTestRepoRoot { $script:RepoRoot }

<# The module manifest under test (the path may not exist yet; Initialize-KvmTest says so). #>
function Get-KvmTestModulePath {
    if ($env:KVMPS_MODULE_PATH) { return $env:KVMPS_MODULE_PATH }
    Join-Path $script:RepoRoot 'out/KvmPS/KvmPS.psd1'
}

function Get-KvmTestVmmPath {
    if ($env:KVMPS_VMM) { return $env:KVMPS_VMM }
    Join-Path $script:RepoRoot 'out/bin/kvmps-vmm'
}

<#
    The command line that starts a child pwsh like the one running the tests: its executable, or, for pwsh
    installed as a dotnet tool (the process is dotnet), dotnet and pwsh.dll.
#>
function Get-KvmTestPwsh {
    $process = [Environment]::ProcessPath
    if ([IO.Path]::GetFileNameWithoutExtension($process) -eq 'dotnet') { return @($process, (Join-Path $PSHOME 'pwsh.dll')) }
    @($process)
}

<#
    Cmdlet names the manifest exports (CmdletsToExport), for -ForEach at discovery. Without the module this is
    empty: discovery goes on, and Initialize-KvmTest then fails every test of the file saying what is missing.
#>
function Get-KvmTestExportedCmdlet {
    $path = Get-KvmTestModulePath
    if (-not (Test-Path -LiteralPath $path)) { return @() }
    @((Import-PowerShellDataFile -LiteralPath $path).CmdletsToExport)
}

<#
    Checks the prerequisites (throws naming what is missing), points KVMPS_HOME at a new private store and
    imports the module under test into the global scope. Returns the store path.
#>
function Initialize-KvmTest {
    [CmdletBinding()]
    param()
    $module = Get-KvmTestModulePath
    $vmm = Get-KvmTestVmmPath
    $missing = @()
    if (-not (Test-Path -LiteralPath '/dev/kvm')) { $missing += '/dev/kvm does not exist (these tests run real VMs on KVM)' }
    if (-not (Test-Path -LiteralPath $vmm -PathType Leaf)) { $missing += "kvmps-vmm is missing at '$vmm' (run './build.sh build' or set KVMPS_VMM)" }
    if (-not (Test-Path -LiteralPath $module -PathType Leaf)) { $missing += "the module is missing at '$module' (run './build.sh build' or set KVMPS_MODULE_PATH)" }
    if ($missing) { throw ('KvmPS Pester tests cannot run: ' + ($missing -join '; ')) }

    $script:Saved = @{ Home = $env:KVMPS_HOME; Vmm = $env:KVMPS_VMM; AllowedPaths = $env:KVMPS_ALLOWED_PATHS }
    $root = Join-Path '/tmp' ('kps-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $root | Out-Null
    $env:KVMPS_HOME = $root
    $env:KVMPS_VMM = $vmm
    $env:KVMPS_ALLOWED_PATHS = '/'
    Import-Module $module -Force -Global -ErrorAction Stop
    $root
}

<# Removes every VM of the private store (turning off running ones), restores the environment, deletes the store. #>
function Complete-KvmTest {
    [CmdletBinding()]
    param()
    $root = $env:KVMPS_HOME
    if (Get-Command Get-KvmVm -ErrorAction SilentlyContinue) {
        Get-KvmVm -ErrorAction SilentlyContinue | Remove-KvmVm -Force -Confirm:$false -ErrorAction SilentlyContinue
    }
    if ($script:Saved) {
        $env:KVMPS_HOME = $script:Saved.Home
        $env:KVMPS_VMM = $script:Saved.Vmm
        $env:KVMPS_ALLOWED_PATHS = $script:Saved.AllowedPaths
        $script:Saved = $null
    }
    if ($root -and $root.StartsWith('/tmp/kps-')) { Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue }
}

<# A small VM on the built-in guest (64 MB), optionally started; returns the fresh KvmVm. #>
function New-KvmTestVm {
    [CmdletBinding()]
    param(
        [Parameter(Mandatory)] [string] $Name,
        [switch] $Start,
        [long] $MemoryStartupBytes = 64MB,
        [int] $ProcessorCount = 1,
        [int] $MaximumProcessorCount = 0
    )
    $new = @{ Name = $Name; MemoryStartupBytes = $MemoryStartupBytes; ProcessorCount = $ProcessorCount; Confirm = $false; ErrorAction = 'Stop' }
    if ($MaximumProcessorCount -gt 0) { $new.MaximumProcessorCount = $MaximumProcessorCount }
    $null = New-KvmVm @new
    if ($Start) { Start-KvmVm -Name $Name -Confirm:$false -ErrorAction Stop }
    Get-KvmVm -Name $Name -ErrorAction Stop
}

<#
The devices the VM's running kvmps-vmm lists in its describe reply (what the guest has now, hot-plugged ones
included): one object per device with Type, Pci and the device's own options (Path, Format, Tap, Mac, ...).
#>
function Get-KvmTestLiveDevice {
    param([Parameter(Mandatory)] [string] $Name)
    $vm = Get-KvmVm -Name $Name -ErrorAction Stop
    $client = [KvmPS.Management.Vmm.VmmClient]::Connect($vm.SocketPath, [TimeSpan]::FromSeconds(2), [TimeSpan]::FromSeconds(5))
    try {
        foreach ($device in $client.Describe().Devices) {
            $properties = [ordered]@{ Type = $device.Type; Pci = $device.Pci }
            if ($device.Options) { foreach ($key in $device.Options.Keys) { $properties[$key] = $device.Options[$key].ToString() } }
            [pscustomobject]$properties
        }
    }
    finally { $client.Dispose() }
}

<#
    The command that runs a program in a test network namespace like `ip netns exec NS`, with the cgroup hierarchies a
    real host has (tests/in-netns.sh): a jailed kvmps-vmm started there needs them.
#>
function Get-KvmTestNetnsRunner { Join-Path $PSScriptRoot '../in-netns.sh' }

<#
Creates and starts a VM from a pwsh running inside the network namespace $Namespace (created here), so the taps
its kvmps-vmm makes (at start and when adapters are hot-plugged later) stay in that namespace. $Setup runs inside
between New-KvmVm and Start-KvmVm (e.g. Add-KvmNetworkAdapter). Remove the VM, then the namespace, when done.
#>
function Start-KvmTestVmInNamespace {
    param([Parameter(Mandatory)] [string] $Name, [Parameter(Mandatory)] [string] $Namespace, [string] $Setup = '')
    & ip netns add $Namespace
    if ($LASTEXITCODE -ne 0) { throw "ip netns add $Namespace failed" }
    $inside = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$((Get-Module KvmPS).Path)'
New-KvmVm -Name $Name -MemoryStartupBytes 64MB -Confirm:`$false | Out-Null
$Setup
Start-KvmVm $Name -Confirm:`$false
"@
    $output = & (Get-KvmTestNetnsRunner) $Namespace (Join-Path $PSHOME 'pwsh') -NoProfile -NonInteractive -Command $inside 2>&1
    if ($LASTEXITCODE -ne 0) { throw "starting $Name in $Namespace failed: $output" }
    Get-KvmVm -Name $Name -ErrorAction Stop
}

<#
    A random name for test networks, bridges and namespaces (parallel runs never collide): prefix + 6 hex digits,
    short enough for a bridge name (15 characters).
#>
function New-KvmTestNetName {
    param([string] $Prefix = 'kvt')
    $Prefix + [guid]::NewGuid().ToString('N').Substring(0, 6)
}

<#
    Runs $Script in a pwsh inside the network namespace $Namespace (created first when -Create), with the module
    under test and this test's store: bridges, nftables rules and dnsmasq a network start makes stay in that namespace.
    Returns @{ ExitCode; Output (stdout lines) }; stderr is merged into Output.
#>
function Invoke-KvmTestInNamespace {
    param([Parameter(Mandatory)] [string] $Namespace, [Parameter(Mandatory)] [string] $Script, [switch] $Create)
    if ($Create) {
        & ip netns add $Namespace
        if ($LASTEXITCODE -ne 0) { throw "ip netns add $Namespace failed" }
        & ip netns exec $Namespace ip link set lo up
    }
    $inside = "`$ErrorActionPreference = 'Stop'`nImport-Module '$((Get-KvmTestModulePath) -replace "'", "''")'`n" + $Script
    $output = & (Get-KvmTestNetnsRunner) $Namespace (Join-Path $PSHOME 'pwsh') -NoProfile -NonInteractive -Command $inside 2>&1
    @{ ExitCode = $LASTEXITCODE; Output = @($output | ForEach-Object { "$_" }) }
}

<#
    Stops the store's networks from inside $Namespace (so their dnsmasq ends), kills any dnsmasq left over by pid,
    and deletes the namespace. Test clean-up: never fails.
#>
function Remove-KvmTestNamespace {
    param([Parameter(Mandatory)] [string] $Namespace)
    $left = Invoke-KvmTestInNamespace -Namespace $Namespace -Script @'
$ErrorActionPreference = 'Continue'
foreach ($n in @(Get-KvmNetwork -ErrorAction SilentlyContinue)) {
    if ($n.DnsmasqProcessId) { "$($n.DnsmasqProcessId)" }
    Stop-KvmNetwork -Name $n.Name -Confirm:$false -ErrorAction SilentlyContinue
}
'@
    foreach ($line in $left.Output) {
        # Only a dnsmasq still running under that pid (Stop-KvmNetwork normally ended it).
        if ($line -match '^\d+$' -and (Get-Process -Id ([int]$line) -ErrorAction SilentlyContinue).ProcessName -eq 'dnsmasq') {
            Stop-Process -Id ([int]$line) -Force -ErrorAction SilentlyContinue
        }
    }
    & ip netns del $Namespace 2>$null
}

<# Turns the VM off and removes it if it exists (test clean-up; never fails). #>
function Remove-KvmTestVm {
    param([Parameter(Mandatory)] [string[]] $Name)
    foreach ($n in $Name) {
        Remove-KvmVm -Name $n -Force -Confirm:$false -ErrorAction SilentlyContinue
    }
}

<# Writes a manifest (.psd1) into the store's test folder and returns its full path. #>
function New-KvmTestManifest {
    param([Parameter(Mandatory)] [string] $FileName, [Parameter(Mandatory)] [string] $Text)
    $dir = Join-Path $env:KVMPS_HOME 'manifests'
    New-Item -ItemType Directory -Path $dir -Force | Out-Null
    $path = Join-Path $dir $FileName
    Set-Content -LiteralPath $path -Value $Text -Encoding utf8NoBOM
    $path
}

<#
    The text -WhatIf (or any host output) prints while $Script runs: pwsh writes "What if:" lines to the host,
    not to a stream, so they are read back from a transcript.
#>
function Get-KvmHostText {
    param([Parameter(Mandatory)] [scriptblock] $Script)
    $file = Join-Path $env:KVMPS_HOME ('transcript-' + [guid]::NewGuid().ToString('N') + '.txt')
    Start-Transcript -LiteralPath $file -UseMinimalHeader | Out-Null
    try { & $Script | Out-Null }
    finally { Stop-Transcript | Out-Null }
    $text = Get-Content -LiteralPath $file -Raw
    Remove-Item -LiteralPath $file -ErrorAction SilentlyContinue
    $text
}

<# The "What if:" lines of the host text, without the prefix. #>
function Get-KvmWhatIfLine {
    param([Parameter(Mandatory)] [scriptblock] $Script)
    (Get-KvmHostText $Script) -split "`r?`n" | Where-Object { $_ -like 'What if: *' } | ForEach-Object { $_.Substring(9) }
}

<#
    Renders $InputObject the way a user sees it in an 80-column terminal and checks it reads well: no line over
    80 characters, no record dumps ("Type { Key = value }") or .NET type names, and (for tables) a one-line header
    followed by its dashes. Returns the non-empty lines. -View: Default (Out-String), Table or List.
#>
function Assert-KvmView {
    param(
        [Parameter(Mandatory)] [AllowEmptyCollection()] [object[]] $InputObject,
        [ValidateSet('Default', 'Table', 'List')] [string] $View = 'Default'
    )
    $text = switch ($View) {
        'Default' { $InputObject | Out-String -Width 80 }
        'Table' { $InputObject | Format-Table | Out-String -Width 80 }
        'List' { $InputObject | Format-List | Out-String -Width 80 }
    }
    $lines = @($text -split "`r?`n" | ForEach-Object { $_.TrimEnd() })
    $long = @($lines | Where-Object { $_.Length -gt 80 })
    $long | Should -BeNullOrEmpty -Because "the $View view must fit 80 columns:`n$text"
    $dumps = @($lines | Where-Object { $_ -match '\b\w+ \{ \w+ =' -or $_ -match '\{\s*\w+\s*=.*\}' })
    $dumps | Should -BeNullOrEmpty -Because "the $View view must not dump records:`n$text"
    $typeNames = @($lines | Where-Object { $_ -match 'KvmPS\.(Management|PowerShell)\.\w|System\.Collections\.|System\.Object\[\]' })
    $typeNames | Should -BeNullOrEmpty -Because "the $View view must not show .NET type names:`n$text"
    $nonEmpty = @($lines | Where-Object { $_.Trim() })
    $isTable = $nonEmpty.Count -ge 2 -and $nonEmpty[1] -match '^[\s-]+$' -and $nonEmpty[1] -match '-'
    if ($View -eq 'Table') {
        $isTable | Should -BeTrue -Because "a table's header must fit on one line, followed by its dashes:`n$text"
    }
    if ($isTable) {
        # One letter per line under a header means a column got no width.
        $nonEmpty[0].Trim() | Should -Not -Match '^\S$' -Because "the header must not wrap:`n$text"
    }
    $nonEmpty
}

<# Checks an ErrorRecord: its id (before the comma), the cmdlet class, category and target. #>
function Assert-KvmError {
    param(
        [Parameter(Mandatory)] [AllowEmptyCollection()] [object[]] $ErrorRecord,
        [Parameter(Mandatory)] [string] $ErrorId,
        [Parameter(Mandatory)] [string] $Command,
        [Parameter(Mandatory)] [System.Management.Automation.ErrorCategory] $Category,
        $TargetObject,
        [switch] $NoTarget
    )
    @($ErrorRecord).Count | Should -BeGreaterThan 0 -Because 'an error was expected'
    $record = @($ErrorRecord)[0]
    $class = 'KvmPS.Commands.' + ($Command -replace '-', '') + 'Command'
    $record.FullyQualifiedErrorId | Should -Be "$ErrorId,$class"
    $record.CategoryInfo.Category | Should -Be $Category
    if (-not $NoTarget) {
        $actual = $record.TargetObject
        if ($actual -is [psobject]) { $actual = $actual.psobject.BaseObject }
        if ($TargetObject -is [string]) { "$actual" | Should -Be $TargetObject }
        else { $actual | Should -Be $TargetObject }
    }
}

<# Help of a cmdlet as a Hyper-V user expects it: synopsis, description, >= 2 examples, every parameter described. #>
function Assert-KvmHelp {
    param([Parameter(Mandatory)] [string] $Command)
    $help = Get-Help $Command -Full
    $help.Synopsis | Should -Not -BeNullOrEmpty
    $help.Synopsis | Should -Not -Match '^\s*\S+-Kvm\S+\s*\[' -Because 'the synopsis must be written, not the generated syntax line'
    ($help.Description | Out-String).Trim() | Should -Not -BeNullOrEmpty -Because "$Command needs a description"
    @($help.Examples.Example).Count | Should -BeGreaterOrEqual 2
    foreach ($example in @($help.Examples.Example)) {
        $example.Code | Should -Match ([regex]::Escape($Command)) -Because 'each example shows the cmdlet'
    }
    $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
    $parameters = (Get-Command $Command).Parameters.Keys | Where-Object { $_ -notin $common }
    $documented = @{}
    foreach ($p in @($help.Parameters.Parameter)) { if ($p) { $documented[$p.Name] = $p } }
    foreach ($name in $parameters) {
        $documented.ContainsKey($name) | Should -BeTrue -Because "-$name of $Command needs help"
        ($documented[$name].Description | Out-String).Trim() | Should -Not -BeNullOrEmpty -Because "-$name of $Command needs a description"
    }
    $help
}

<# Completion texts TabExpansion2 offers for $InputScript with the cursor at its end. #>
function Get-KvmCompletion {
    param([Parameter(Mandatory)] [string] $InputScript)
    @((TabExpansion2 -inputScript $InputScript -cursorColumn $InputScript.Length).CompletionMatches | ForEach-Object CompletionText)
}

<#
    Runs $Script in a child pwsh (-NoProfile -NonInteractive) that sees this test's store and VMM. Unless -NoImport,
    the module under test is imported first. Returns @{ ExitCode; Output (stdout lines); Error (stderr text) }.
    Standard input is empty (redirected), as in CI.
#>
function Invoke-KvmChildPwsh {
    param(
        [Parameter(Mandatory)] [string] $Script,
        [switch] $NoImport,
        [hashtable] $Environment = @{},
        [int] $TimeoutSec = 120
    )
    $prelude = if ($NoImport) { '' } else { "Import-Module '$((Get-KvmTestModulePath) -replace "'", "''")' -ErrorAction Stop`n" }
    $file = Join-Path $env:KVMPS_HOME ('child-' + [guid]::NewGuid().ToString('N').Substring(0, 8) + '.ps1')
    Set-Content -LiteralPath $file -Value ($prelude + $Script) -Encoding utf8NoBOM
    $pwsh = @(Get-KvmTestPwsh)
    $psi = [System.Diagnostics.ProcessStartInfo]::new($pwsh[0])
    foreach ($a in @($pwsh | Select-Object -Skip 1) + '-NoProfile', '-NonInteractive', '-File', $file) { $psi.ArgumentList.Add($a) }
    $psi.RedirectStandardInput = $true
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $psi.UseShellExecute = $false
    $psi.Environment['KVMPS_HOME'] = $env:KVMPS_HOME
    $psi.Environment['KVMPS_VMM'] = $env:KVMPS_VMM
    $psi.Environment['NO_COLOR'] = '1'
    $psi.Environment['TERM'] = 'dumb'
    foreach ($key in $Environment.Keys) {
        if ($null -eq $Environment[$key]) { $psi.Environment.Remove($key) | Out-Null }
        else { $psi.Environment[$key] = [string]$Environment[$key] }
    }
    $process = [System.Diagnostics.Process]::Start($psi)
    $stdout = $process.StandardOutput.ReadToEndAsync()
    $stderr = $process.StandardError.ReadToEndAsync()
    $process.StandardInput.Close()
    if (-not $process.WaitForExit($TimeoutSec * 1000)) {
        $process.Kill($true)
        throw "The child pwsh did not finish within $TimeoutSec s: $Script"
    }
    $process.WaitForExit()
    Remove-Item -LiteralPath $file -ErrorAction SilentlyContinue
    [pscustomobject]@{
        ExitCode = $process.ExitCode
        Output   = @($stdout.Result -split "`r?`n" | Where-Object { $_ -ne '' })
        Error    = $stderr.Result
    }
}

Export-ModuleMember -Function *-KvmTest*, Get-KvmHostText, Get-KvmWhatIfLine, Assert-KvmView, Assert-KvmError, Assert-KvmHelp, Get-KvmCompletion, Invoke-KvmChildPwsh, Get-KvmTestPwsh
