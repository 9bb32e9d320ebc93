# ISO 9660 test images for the DVD cmdlets: the smallest file the ISO check accepts ("CD001" at byte 0x8001).
function New-KvmTestIso {
    param([Parameter(Mandatory)] [string] $Path, [switch] $NotIso)
    $bytes = [byte[]]::new(0x9000)
    if (-not $NotIso) { [Text.Encoding]::ASCII.GetBytes('CD001').CopyTo($bytes, 0x8001) }
    [IO.File]::WriteAllBytes($Path, $bytes)
    $Path
}
Export-ModuleMember -Function New-KvmTestIso
