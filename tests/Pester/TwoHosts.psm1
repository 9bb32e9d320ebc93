<#
    Two test hosts on this machine for the -HostName Pester tests (docs/remote.md), the PowerShell twin of
    tests/KvmPS.Cli.Tests/TwoHosts/TwoHostFixture.cs: two network namespaces joined by a veth pair (10.231.0.1 and
    10.231.0.2), each running a real OpenSSH sshd started here with its own config and host key, accepting one client
    key (root, key-based only). Each host has its own store (sshd's SetEnv KVMPS_HOME) and the published kvmps and
    kvmps-vmm of the module under test on its PATH. Remove-KvmTestHostPair kills the sshds and deletes the namespaces
    (with the veth pair) and the directory, also after a failed set-up.
#>

Set-StrictMode -Version 3.0

<# Why the pair cannot be made here (not root, no ip, no sshd), or $null. #>
function Get-KvmTestHostPairSkipReason {
    if (-not $IsLinux) { return 'the two-host tests need Linux network namespaces' }
    if ((id -u) -ne '0') { return 'the two-host tests need root (network namespaces, sshd)' }
    if (-not (Get-Command ip -ErrorAction Ignore)) { return "the two-host tests need iproute2's 'ip' (./build.sh setup)" }
    if (-not (Test-Path /usr/sbin/sshd)) { return "the two-host tests need OpenSSH's sshd (openssh-server; ./build.sh setup)" }
    if (-not (Get-Command ssh -ErrorAction Ignore) -or -not (Get-Command ssh-keygen -ErrorAction Ignore)) { return 'the two-host tests need openssh-client' }
    $null
}

function Invoke-KvmTestNative {
    param([Parameter(Mandatory)] [string] $Program, [string[]] $Arguments)
    $output = & $Program @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$Program $($Arguments -join ' ') failed ($LASTEXITCODE): $output" }
}

<#
    Makes the pair. -BinDirectory: the folder whose kvmps (and kvmps-vmm) each host runs (the module's bin/);
    -Environment: more variables for both hosts' sessions (e.g. KVMPS_SYSFS_ROOT, a fake sysfs; no spaces in values).
    Returns an object with Directory, Host1, Host2 (Name, Namespace, Address, StoreHome), ClientKeyPath,
    OtherKeyPath (a key no host accepts), SshConfigPath and SshFromHost1 (an ssh that runs in h1's namespace).
#>
function New-KvmTestHostPair {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $BinDirectory, [hashtable] $Environment = @{})
    $id = [guid]::NewGuid().ToString('N').Substring(0, 6)
    $pair = [pscustomobject]@{
        Directory = "/tmp/kv2p-$id"; Host1 = $null; Host2 = $null; Sshds = [System.Collections.Generic.List[System.Diagnostics.Process]]::new()
        Namespaces = [System.Collections.Generic.List[string]]::new(); ClientKeyPath = $null; OtherKeyPath = $null; SshConfigPath = $null; SshFromHost1 = $null
    }
    try {
        New-Item -ItemType Directory -Path $pair.Directory | Out-Null
        $hosts = foreach ($n in 1, 2) {
            $netns = "kv2p-$id-$n"
            Invoke-KvmTestNative ip netns, add, $netns
            $pair.Namespaces.Add($netns)
            $dir = Join-Path $pair.Directory "h$n"
            New-Item -ItemType Directory -Path (Join-Path $dir store) | Out-Null
            [pscustomobject]@{ Name = "h$n"; Namespace = $netns; Address = "10.231.0.$n"; StoreHome = (Join-Path $dir store); Dir = $dir }
        }
        $pair.Host1, $pair.Host2 = $hosts
        Invoke-KvmTestNative ip link, add, "kp${id}a", type, veth, peer, name, "kp${id}b"
        foreach ($end in @(@($pair.Host1, "kp${id}a"), @($pair.Host2, "kp${id}b"))) {
            $h, $veth = $end
            Invoke-KvmTestNative ip link, set, $veth, netns, $h.Namespace
            Invoke-KvmTestNative ip '-n', $h.Namespace, addr, add, "$($h.Address)/24", dev, $veth
            Invoke-KvmTestNative ip '-n', $h.Namespace, link, set, $veth, up
            Invoke-KvmTestNative ip '-n', $h.Namespace, link, set, lo, up
        }
        foreach ($key in 'client_key', 'other_key', 'h1_host_key', 'h2_host_key') {
            Invoke-KvmTestNative ssh-keygen '-q', '-t', 'ed25519', '-N', '', '-C', $key, '-f', (Join-Path $pair.Directory $key)
        }
        $pair.ClientKeyPath = Join-Path $pair.Directory client_key
        $pair.OtherKeyPath = Join-Path $pair.Directory other_key
        $known = foreach ($h in $pair.Host1, $pair.Host2) {
            "$($h.Address) $((Get-Content (Join-Path $pair.Directory "$($h.Name)_host_key.pub")).Trim())"
        }
        Set-Content -Path (Join-Path $pair.Directory known_hosts) -Value $known
        $pair.SshConfigPath = Join-Path $pair.Directory ssh_config
        Set-Content -Path $pair.SshConfigPath -Value @(
            'Host *', "  UserKnownHostsFile $(Join-Path $pair.Directory known_hosts)", '  GlobalKnownHostsFile /dev/null', '  StrictHostKeyChecking yes')
        $pair.SshFromHost1 = Join-Path $pair.Directory ssh-from-h1
        Set-Content -Path $pair.SshFromHost1 -Value "#!/bin/sh`nexec ip netns exec $($pair.Host1.Namespace) ssh `"`$@`""
        chmod 700 $pair.SshFromHost1

        New-Item -ItemType Directory -Force -Path /run/sshd | Out-Null
        # Sessions get the clients' ssh_config and key too, so a host can reach the other in turn (Move-KvmVm -HostName).
        foreach ($h in $pair.Host1, $pair.Host2) {
            Copy-Item "$($pair.ClientKeyPath).pub" (Join-Path $h.Dir authorized_keys)
            $config = Join-Path $h.Dir sshd_config
            Set-Content -Path $config -Value @(
                "ListenAddress $($h.Address):22", "HostKey $(Join-Path $pair.Directory "$($h.Name)_host_key")",
                "AuthorizedKeysFile $(Join-Path $h.Dir authorized_keys)", "PidFile $(Join-Path $h.Dir sshd.pid)",
                'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password',
                "SetEnv KVMPS_HOME=$($h.StoreHome) PATH=${BinDirectory}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin DOTNET_NOLOGO=1 KVMPS_SSH_CONFIG=$($pair.SshConfigPath) KVMPS_SSH_KEY=$($pair.ClientKeyPath)$(foreach ($k in $Environment.Keys) { " $k=$($Environment[$k])" })")
            $log = Join-Path $h.Dir sshd.log
            $start = [System.Diagnostics.ProcessStartInfo]::new((Join-Path $PSScriptRoot '../in-netns.sh'))
            foreach ($a in $h.Namespace, '/usr/sbin/sshd', '-D', '-E', $log, '-f', $config) { $start.ArgumentList.Add($a) }
            $pair.Sshds.Add([System.Diagnostics.Process]::Start($start))
            $deadline = (Get-Date).AddSeconds(15)
            while (-not ((Test-Path $log) -and (Get-Content -Raw $log) -match 'Server listening')) {
                if ((Get-Date) -gt $deadline) { throw "sshd for $($h.Name) did not start listening: $(if (Test-Path $log) { Get-Content -Raw $log })" }
                Start-Sleep -Milliseconds 50
            }
        }
        $pair
    }
    catch {
        Remove-KvmTestHostPair $pair
        throw
    }
}

function Remove-KvmTestHostPair {
    param($Pair)
    if ($null -eq $Pair) { return }
    foreach ($sshd in $Pair.Sshds) {
        try { if (-not $sshd.HasExited) { $sshd.Kill($true) }; $null = $sshd.WaitForExit(5000) } catch { }
    }
    foreach ($netns in $Pair.Namespaces) { & ip netns del $netns 2>$null }
    if (Test-Path $Pair.Directory) { Remove-Item -Recurse -Force $Pair.Directory }
}

Export-ModuleMember -Function Get-KvmTestHostPairSkipReason, New-KvmTestHostPair, Remove-KvmTestHostPair
