#Requires -Version 7.4
# Get-KvmHostPciDevice: the host's PCI functions from sysfs; selection, -Driver, errors, views in 80 columns, help.

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Initialize-KvmTest | Out-Null
    $script:sysfs = @(Get-ChildItem -Path '/sys/bus/pci/devices' -ErrorAction SilentlyContinue | Sort-Object Name)
    if ($sysfs.Count -gt 0) {
        $script:first = $sysfs[0].Name
        $script:firstVendor = [Convert]::ToUInt16((Get-Content (Join-Path $sysfs[0].FullName 'vendor')).Trim(), 16)
        $script:firstDevice = [Convert]::ToUInt16((Get-Content (Join-Path $sysfs[0].FullName 'device')).Trim(), 16)
        $script:firstClass = [Convert]::ToUInt32((Get-Content (Join-Path $sysfs[0].FullName 'class')).Trim(), 16)
    }
}

AfterAll { Complete-KvmTest }

Describe 'Get-KvmHostPciDevice' {
    It 'reports a missing address as ObjectNotFound naming it' {
        Get-KvmHostPciDevice -Address '0000:ff:1f.7' -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Assert-KvmError $err -ErrorId HostDeviceNotFound -Command Get-KvmHostPciDevice -Category ObjectNotFound -TargetObject '0000:ff:1f.7'
    }

    It 'is silent when a wildcard matches nothing' {
        Get-KvmHostPciDevice -Address 'ffff:*' -ErrorVariable err | Should -BeNullOrEmpty
        $err | Should -BeNullOrEmpty
    }

    It 'has full help' {
        Assert-KvmHelp Get-KvmHostPciDevice | Out-Null
    }

    It 'lists every function in sysfs, in address order' {
        $devices = @(Get-KvmHostPciDevice)
        $devices.Count | Should -Be $sysfs.Count
        if ($sysfs.Count -gt 0) { ($devices | ForEach-Object { $_.Address.ToString() }) | Should -Be $sysfs.Name }
    }

    # The cases below need a device in /sys/bus/pci/devices; a host without PCI (some containers) has none, and
    # then they are skipped with that reason.
    Context 'on a host with PCI devices' {
        BeforeEach {
            if ($sysfs.Count -eq 0) { Set-ItResult -Skipped -Because 'this host has no PCI devices under /sys/bus/pci/devices' }
        }

        It 'reads the IDs and class of a function' {
            $device = Get-KvmHostPciDevice -Address $first
            $device.Address.ToString() | Should -Be $first
            $device.VendorId | Should -Be $firstVendor
            $device.DeviceId | Should -Be $firstDevice
            $device.ClassCode | Should -Be $firstClass
            $device.ClassName | Should -Not -BeNullOrEmpty
        }

        It 'matches addresses with wildcards, by position and by property name' {
            (Get-KvmHostPciDevice "$($first.Substring(0, 8))*").Count | Should -BeGreaterThan 0
            ([pscustomobject]@{ PciAddress = $first } | Get-KvmHostPciDevice).Address.ToString() | Should -Be $first
            ([pscustomobject]@{ Address = $first } | Get-KvmHostPciDevice).Address.ToString() | Should -Be $first
        }

        It 'filters by driver with wildcards' {
            $bound = $sysfs | Where-Object { Test-Path (Join-Path $_.FullName 'driver') }
            $drivers = @($bound | ForEach-Object { Split-Path -Leaf (Get-Item (Join-Path $_.FullName 'driver')).LinkTarget } | Sort-Object -Unique)
            foreach ($driver in $drivers) {
                $expected = @($bound | Where-Object { (Split-Path -Leaf (Get-Item (Join-Path $_.FullName 'driver')).LinkTarget) -eq $driver }).Count
                @(Get-KvmHostPciDevice -Driver $driver).Count | Should -Be $expected
                @(Get-KvmHostPciDevice -Driver ($driver.Substring(0, 1) + '*') | Where-Object Driver -eq $driver).Count | Should -Be $expected
            }
            Get-KvmHostPciDevice -Driver 'no-such-driver' | Should -BeNullOrEmpty
        }

        It 'fits the table in 80 columns with a one-line header' -Tag 'Issue9' {
            $lines = Assert-KvmView @(Get-KvmHostPciDevice) -View Table
            $lines.Count | Should -Be ($sysfs.Count + 2)
        }

        It 'shows vendor, device and class IDs in hex in the table and the list' -Tag 'Issue9' {
            $device = Get-KvmHostPciDevice -Address $first
            $hexIds = '{0:x4}:{1:x4}' -f $firstVendor, $firstDevice
            foreach ($view in 'Table', 'List') {
                $text = $device | & "Format-$view" | Out-String -Width 80
                $text | Should -Match $hexIds -Because "the $view view shows vendor:device in hex"
                $text | Should -Not -Match "\b$firstVendor\b" -Because "the $view view must not show the vendor ID in decimal"
                if ($firstClass -gt 9) { $text | Should -Not -Match "\b$firstClass\b" -Because "the $view view must not show the class code in decimal" }
            }
            ($device | Format-List | Out-String -Width 80) | Should -Match ('{0:x6}' -f $firstClass)
        }

        It 'fits the list view in 80 columns' {
            Assert-KvmView @(Get-KvmHostPciDevice -Address $first) -View List | Out-Null
        }
    }
}
