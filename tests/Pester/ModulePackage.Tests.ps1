#Requires -Version 7.4
<#
    The module package as a PowerShell user gets it: out/packages/KvmPS.<version>.nupkg, installed with
    Install-PSResource from a folder repository into a throw-away user scope (its own HOME), then used with no
    KVMPS_VMM, KVMPS_CLI or PATH entry: the installed module must run VMs with the kvmps-vmm it carries.
#>

BeforeAll {
    $repoRoot = Resolve-Path (Join-Path $PSScriptRoot '../..')
    $script:packageFolder = Join-Path $repoRoot 'out/packages'
    $script:package = Get-ChildItem -Path $packageFolder -Filter 'KvmPS.*.nupkg' -ErrorAction SilentlyContinue | Select-Object -First 1
    $script:version = (Import-PowerShellDataFile (Join-Path $repoRoot 'KvmPS.psd1')).ModuleVersion
    $script:scratch = Join-Path ([IO.Path]::GetTempPath()) ('kps-pkg-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path (Join-Path $scratch 'home') | Out-Null
    $script:pwsh = Join-Path $PSHOME pwsh   # this pwsh (under the dotnet tool, the process itself is dotnet)

    # Runs a script in a child pwsh whose user scope is $scratch/home and whose environment knows nothing of the
    # build: no KVMPS_* variables and a PATH of system folders only. Returns the child's output lines.
    function script:Invoke-InstalledScope([string] $Script) {
        $startInfo = [System.Diagnostics.ProcessStartInfo]::new($pwsh)
        foreach ($argument in '-NoProfile', '-NonInteractive', '-Command', $Script) { $startInfo.ArgumentList.Add($argument) }
        foreach ($name in @($startInfo.Environment.Keys)) {
            if ($name -like 'KVMPS_*' -or $name -in 'PSModulePath', 'XDG_DATA_HOME', 'XDG_CONFIG_HOME', 'XDG_CACHE_HOME') { $startInfo.Environment.Remove($name) | Out-Null }
        }
        $startInfo.Environment['HOME'] = Join-Path $scratch 'home'
        $startInfo.Environment['PATH'] = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:' + (Split-Path (Get-Command dotnet).Source)
        $startInfo.Environment['KVMPS_HOME'] = Join-Path $scratch 'store'
        $startInfo.RedirectStandardOutput = $true
        $startInfo.RedirectStandardError = $true
        $process = [System.Diagnostics.Process]::Start($startInfo)
        $stderr = $process.StandardError.ReadToEndAsync()
        $stdout = $process.StandardOutput.ReadToEnd()
        $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; Output = $stdout -split "`n" | Where-Object { $_ }; Error = $stderr.Result }
    }
}

AfterAll {
    if ($script:scratch) {
        Invoke-InstalledScope 'Get-KvmVm -ErrorAction SilentlyContinue | Remove-KvmVm -Force -Confirm:$false -ErrorAction SilentlyContinue' | Out-Null
        Remove-Item -Recurse -Force $script:scratch -ErrorAction SilentlyContinue
    }
}

Describe 'The KvmPS module package' {
    It 'is built by ./build.sh build with the version of KvmPS.psd1' {
        $package | Should -Not -BeNullOrEmpty -Because "./build.sh build writes out/packages/KvmPS.$version.nupkg"
        $package.Name | Should -Be "KvmPS.$version.nupkg"
    }

    It 'installs with Install-PSResource from a folder repository, carrying kvmps-vmm and kvmps' {
        $run = Invoke-InstalledScope @"
`$ErrorActionPreference = 'Stop'
Register-PSResourceRepository -Name KvmPSLocal -Uri '$packageFolder' -Trusted
Install-PSResource -Name KvmPS -Repository KvmPSLocal -Scope CurrentUser -TrustRepository -Quiet
`$installed = Get-InstalledPSResource -Name KvmPS
"installed=`$(`$installed.Version)"
"location=`$(`$installed.InstalledLocation)"
"@
        $run.Error | Should -BeNullOrEmpty
        $run.ExitCode | Should -Be 0
        $run.Output | Should -Contain "installed=$version"
        $moduleBase = Join-Path $scratch "home/.local/share/powershell/Modules/KvmPS/$version"
        Join-Path $moduleBase 'bin/kvmps-vmm' | Should -Exist
        Join-Path $moduleBase 'bin/kvmps' | Should -Exist
    }

    It 'imports by name with no error and no warning, and New-KvmVm | Start-KvmVm runs its own kvmps-vmm' {
        $run = Invoke-InstalledScope @'
$ErrorActionPreference = 'Stop'
$vm = New-KvmVm -Name pkgvm -MemoryStartupBytes 64MB | Start-KvmVm -PassThru -WarningVariable warnings
"module=$((Get-Module KvmPS).ModuleBase)"
"state=$($vm.State)"
"vmm=$((Get-Item "/proc/$($vm.ProcessId)/exe").Target)"
"warnings=$($warnings.Count)"
Stop-KvmVm -Name pkgvm -TurnOff -Confirm:$false
Remove-KvmVm -Name pkgvm -Force -Confirm:$false
'@
        $run.Error | Should -BeNullOrEmpty
        $run.ExitCode | Should -Be 0
        $moduleBase = Join-Path $scratch "home/.local/share/powershell/Modules/KvmPS/$version"
        $run.Output | Should -Contain "module=$moduleBase"
        $run.Output | Should -Contain 'state=Running'
        $run.Output | Should -Contain "vmm=$(Join-Path $moduleBase 'bin/kvmps-vmm')"
        $run.Output | Should -Contain 'warnings=0'
    }
}
