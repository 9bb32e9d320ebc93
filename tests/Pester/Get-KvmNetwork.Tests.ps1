#Requires -Version 7.4
# Get-KvmNetwork: lists the store's networks with wildcards, a missing name is NetworkNotFound, tab completion of
# network names, the 80-column view, help. Tags as in New-KvmNetwork.Tests.ps1.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:octet = Get-Random -Minimum 10 -Maximum 250
}

AfterAll {
    Complete-KvmTest
}

Describe 'Get-KvmNetwork' {
    Context 'without the host' {
        It 'completes network names from the store''s network files' {
            $folder = Join-Path $env:KVMPS_HOME 'networks'
            New-Item -ItemType Directory -Path $folder -Force | Out-Null
            # Completion reads only the file names; the content is the network manager's business.
            New-Item -ItemType File -Path (Join-Path $folder 'complete-me.network.json'), (Join-Path $folder 'other.network.json') -Force | Out-Null
            try {
                Get-KvmCompletion 'Get-KvmNetwork comp' | Should -Be @('complete-me')
                Get-KvmCompletion 'Start-KvmNetwork -Name o' | Should -Be @('other')
                Get-KvmCompletion 'Add-KvmNetworkAdapter -Name x -Network c' | Should -Be @('complete-me')
            }
            finally {
                Remove-Item -LiteralPath (Join-Path $folder 'complete-me.network.json'), (Join-Path $folder 'other.network.json') -Force
            }
        }

        It 'shows a network in a table within 80 columns, with its users' {
            $definition = [KvmPS.Management.Networks.NetworkDefinition]::new('a-long-net-name', 'Nat', 'kvbr-0123456789', '10.249.200.0/24',
                $null, $null, $null, $null, $null, $null, $true)
            $info = [KvmPS.Management.Networks.NetworkInfo]::new($definition, 'Degraded', [string[]]@('dnsmasq is not running'), $null, [string[]]@('web1', 'web2'))
            $lines = Assert-KvmView -InputObject @([KvmPS.PowerShell.KvmNetwork]::new($info)) -View Table
            $lines[0] | Should -Match '^Name\s+Mode\s+State\s+Bridge\s+Subnet\s+UsedBy'
            $lines[2] | Should -Match 'Degraded'
            $lines[2] | Should -Match 'web1,web2'
            Assert-KvmView -InputObject @([KvmPS.PowerShell.KvmNetwork]::new($info)) -View List | Should -Contain 'Problems         : {dnsmasq is not running}' -Because 'the list shows what is wrong'
        }

        It 'has full help' {
            Assert-KvmHelp Get-KvmNetwork | Out-Null
        }
    }

    Context 'in the store' -Tag 'NetworkManager' {
        BeforeAll {
            New-KvmNetwork -Name web-net -BridgeName (New-KvmTestNetName) -Subnet "10.249.$octet.0/24" | Out-Null
            New-KvmNetwork -Name db-net -Mode Isolated -BridgeName (New-KvmTestNetName) -Subnet "10.246.$octet.0/24" | Out-Null
        }

        It 'lists every network, Inactive until started' {
            $all = @(Get-KvmNetwork)
            $all.Name | Should -Contain 'web-net'
            $all.Name | Should -Contain 'db-net'
            $all | ForEach-Object { $_.State | Should -Be 'Inactive' }
        }

        It 'selects by wildcard, and a wildcard matching nothing is no error' {
            (Get-KvmNetwork 'web*').Name | Should -Be 'web-net'
            Get-KvmNetwork 'none*' -ErrorVariable err | Should -BeNullOrEmpty
            $err | Should -BeNullOrEmpty
        }

        It 'reports a missing name as NetworkNotFound and still returns the others' {
            $found = Get-KvmNetwork -Name db-net, missing -ErrorVariable err -ErrorAction SilentlyContinue
            $found.Name | Should -Be 'db-net'
            Assert-KvmError $err -ErrorId NetworkNotFound -Command Get-KvmNetwork -Category ObjectNotFound -TargetObject 'missing'
        }

        It 'binds -Name from piped objects' {
            ([pscustomobject]@{ Name = 'db-net' } | Get-KvmNetwork).Mode | Should -Be 'Isolated'
        }
    }
}
