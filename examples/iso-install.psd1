# Install from an ISO and watch the screen (virt-install --cdrom ... --graphics vnc): docs/installing-from-iso.md.
#
#   kvmps apply examples/iso-install.psd1      # the pool, then the VM, started: SeaBIOS boots the DVD
#   kvmps vm vnc iso-grub                      # where its VNC server listens (vncviewer PATH)
#   kvmps vm screenshot iso-grub grub.png      # the GRUB menu as PNG
#
# The ISO is Debian's grub-rescue-pc image (apt-get install grub-rescue-pc). A VM may only use files in the store,
# a storage pool's folder or a folder the admin allowed (docs/confinement.md): the pool 'rescue-isos' makes
# /usr/lib/grub-rescue such a folder (apply needs to be able to write there: run it as root), and the DVD names the
# ISO as a volume of it. Without the pool: copy the ISO into the default pool (kvmps vol list default shows its
# folder) and use @{ Volume = 'grub-rescue-cdrom.iso' }, or have the admin add the folder to KVMPS_ALLOWED_PATHS.
@{
    StoragePools    = @(
        @{ Name = 'rescue-isos'; Path = '/usr/lib/grub-rescue' }
    )

    VirtualMachines = @(
        @{
            Name               = 'iso-grub'
            MemoryStartupBytes = 256MB
            State              = 'Running'
            # SeaBIOS, the built-in firmware: it boots the DVD (El Torito), then the disk.
            Boot               = @{ FirmwarePath = 'seabios' }
            Disks              = @( @{ Path = 'root.qcow2'; SizeBytes = 1GB } )
            DvdDrives          = @( @{ Pool = 'rescue-isos'; Volume = 'grub-rescue-cdrom.iso' } )
            BootOrder          = @('Dvd', 'Disk')
            # A display (Bochs, with SeaBIOS's VGA BIOS) and VNC on the unix socket vnc.sock in the VM's folder;
            # '127.0.0.1:5901' would add a TCP listener (beyond loopback only with PasswordFile).
            Display            = @{ Vnc = 'unix' }
        }
    )
}
