#Requires -Version 7.4
# The KvmPS module as a whole: a clean import in a fresh session, autoload from PSModulePath, the exports against
# the cmdlets that exist, help for every cmdlet, the about topics, and a test file for every cmdlet.

BeforeDiscovery {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    $script:exported = @(Get-KvmTestExportedCmdlet)
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:modulePath = Get-KvmTestModulePath
    $script:manifest = Import-PowerShellDataFile -LiteralPath $modulePath
}

AfterAll { Complete-KvmTest }

Describe 'The KvmPS module' {
    Context 'loading' {
        It 'imports in a fresh session with no error and no warning' {
            $child = Invoke-KvmChildPwsh -NoImport -Script @"
`$WarningPreference = 'Continue'
Import-Module '$modulePath' -ErrorAction Stop -WarningVariable w -Verbose:`$false 3>&1
'WARNINGS=' + @(`$w).Count
'ERRORS=' + `$Error.Count
'CMDLETS=' + @(Get-Command -Module KvmPS -CommandType Cmdlet).Count
"@
            $child.Error | Should -BeNullOrEmpty
            $child.ExitCode | Should -Be 0
            $child.Output | Should -Contain 'WARNINGS=0'
            $child.Output | Should -Contain 'ERRORS=0'
            $child.Output | Should -Contain "CMDLETS=$($exported.Count)"
            @($child.Output | Where-Object { $_ -notmatch '^(WARNINGS|ERRORS|CMDLETS)=' }) | Should -BeNullOrEmpty -Because 'the import prints nothing'
        }

        It 'autoloads by cmdlet name from PSModulePath, without Import-Module' {
            # The folder that holds the KvmPS module folder (out/, or the version folder's grandparent when installed).
            $dir = Split-Path -Parent $modulePath
            while ((Split-Path -Leaf $dir) -ne 'KvmPS' -and (Split-Path -Parent $dir)) { $dir = Split-Path -Parent $dir }
            (Split-Path -Leaf $dir) | Should -Be 'KvmPS' -Because "the module must sit in a folder named KvmPS to autoload ($modulePath)"
            $root = Split-Path -Parent $dir
            $child = Invoke-KvmChildPwsh -NoImport -Environment @{ PSModulePath = $root } -Script @'
'BEFORE=' + @(Get-Module KvmPS).Count
New-KvmVm -Name mod-auto -MemoryStartupBytes 64MB | Start-KvmVm
'STATE=' + (Get-KvmVm mod-auto).State
'LOADED=' + (Get-Module KvmPS).ModuleBase
Remove-KvmVm mod-auto -Force -Confirm:$false
'ERRORS=' + $Error.Count
'@
            $child.Error | Should -BeNullOrEmpty
            $child.Output | Should -Contain 'BEFORE=0'
            $child.Output | Should -Contain 'STATE=Running'
            $child.Output | Should -Contain ('LOADED=' + (Split-Path -Parent $modulePath))
            $child.Output | Should -Contain 'ERRORS=0'
        }
    }

    Context 'exports' {
        It 'exports exactly the cmdlets of its manifest, and nothing else' {
            $commands = @(Get-Command -Module KvmPS)
            ($commands | Where-Object CommandType -ne 'Cmdlet').Name | Should -BeNullOrEmpty
            ($commands.Name | Sort-Object) | Should -Be ($manifest.CmdletsToExport | Sort-Object)
            $manifest.FunctionsToExport | Should -BeNullOrEmpty
            $manifest.AliasesToExport | Should -BeNullOrEmpty
            $manifest.VariablesToExport | Should -BeNullOrEmpty
        }

        It 'exports every cmdlet its assembly defines' {
            $assembly = (Get-Command Get-KvmVm).ImplementingType.Assembly
            $defined = $assembly.GetExportedTypes() |
                ForEach-Object { $_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false) } |
                ForEach-Object { '{0}-{1}' -f $_.VerbName, $_.NounName }
            ($defined | Sort-Object) | Should -Be ($manifest.CmdletsToExport | Sort-Object)
        }

        It 'exports the KvmVm DSC resource' {
            $manifest.DscResourcesToExport | Should -Be @('KvmVm')
        }

        It '<_> uses an approved verb' -ForEach $exported {
            $verb = $_.Split('-')[0]
            (Get-Verb -Verb $verb) | Should -Not -BeNullOrEmpty
        }

        It '<_> declares its output type' -ForEach $exported {
            (Get-Command $_).OutputType | Should -Not -BeNullOrEmpty
        }

        It '<_> has a Pester test file' -ForEach $exported {
            Join-Path $PSScriptRoot "$_.Tests.ps1" | Should -Exist
        }

        It '<_> reaches another host (-HostName, -UserName, -KeyFilePath), or takes its host from the manifest' -ForEach $exported {
            # docs/remote.md: the desired-state cmdlets read HostName from each manifest instead.
            $parameters = (Get-Command $_).Parameters
            if ($_ -in 'Get-KvmDesiredState', 'Test-KvmDesiredState', 'Invoke-KvmDesiredState') {
                $parameters.Keys | Should -Not -Contain 'HostName'
            }
            else {
                foreach ($name in 'HostName', 'UserName', 'KeyFilePath') { $parameters.Keys | Should -Contain $name }
            }
        }
    }

    Context 'help' {
        It '<_> has full help: synopsis, description, two examples, every parameter described' -ForEach $exported {
            Assert-KvmHelp $_ | Out-Null
        }

        It 'has the about_KvmPS and about_KvmPS_Manifests topics' {
            (Get-Help about_KvmPS | Out-String) | Should -Match 'KVMPS_HOME'
            (Get-Help about_KvmPS_Manifests | Out-String) | Should -Match 'VirtualMachines'
            # Markdown's double-backtick spans keep PowerShell's escape character: `n, not a bare n.
            (Get-Help about_KvmPS_Manifests | Out-String) | Should -Match ([regex]::Escape('escapes (`n, `$, `u{'))
        }
    }
}
