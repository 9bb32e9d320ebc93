namespace KvmPS.Cli;

/// <summary>The --help texts (docs/cli.md has the full reference).</summary>
internal static class HelpText
{
    public const string Main = """
        kvmps - declarative VM provisioning on Linux KVM (KvmPS command line)

        Usage: kvmps COMMAND [ARGS] [OPTIONS]

        Desired state (manifests: docs/en-US/about_KvmPS_Manifests.md):
          apply FILE...       make the host match the manifests (--what-if: show the plan only)
          plan FILE...        show the ordered steps apply would run
          test FILE...        exit 0 if the host matches, 1 if it drifts (--detailed: list the drift)
          get FILE...         the manifests' VMs as they are now, and VMs the manifests do not name
          export [NAME...]    the VMs that exist now as a manifest (-o FILE: write it to FILE)

        VMs:
          vm list             all VMs with their state
          vm start NAME       start a VM and wait until it runs
          vm stop NAME        stop a VM (ACPI power button, then forced; --force: at once)
          vm restart NAME     stop it as above, then start it again (reboot)
          vm suspend|resume NAME
                              pause the vCPUs of a running VM, or let a paused one run
          vm remove NAME      remove a VM (--force: stop it first; --keep-disks)
          vm console NAME     attach to the serial console (Ctrl-] detaches)
          vm log NAME         the serial console output so far (--tail N: the last N lines)
          vm setvcpus NAME N  set the vCPU count (a running VM gets it live within its maximum)
          vm setmem NAME SIZE set the memory (e.g. 512M, 1G; live within the maximum where the VMM can)
          vm setlimits NAME   CPU weight and cap, the VMM's memory overhead limit (its cgroup; live where it can)
          vm attach-disk|detach-disk|attach-nic|detach-nic
                              add or remove a disk or network adapter (hot-plugged into a running VM)
          vm snapshot create|list|restore|remove NAME ...
                              checkpoints of a VM (running, paused or off)
          vm save NAME        save a running VM to disk and stop it; vm start resumes it
          vm export NAME DIR  copy a VM that is off or saved into DIR/NAME
          vm import DIR       bring an exported VM into the store (--copy, --new-id)
          autostart           start autostart networks, then every VM with Autostart = $true, and resume saved VMs (for a systemd unit)

        Storage pools (docs/pools.md):
          pool list|create|remove|info   directory pools of volumes ('default' is under the store)
          vol list|create|remove         raw and qcow2 volumes in a pool
          disk create PATH               a sparse raw or qcow2 image at PATH (--size, --format, --backing; --pool)

        Networks (docs/networks.md):
          net list|show|create|set|start|stop|remove   Nat, Isolated and Bridge networks (bridge, dnsmasq, nftables)
          vm addresses NAME              each adapter's network and the DHCP addresses its MAC holds

        Host devices (docs/passthrough-host.md):
          host pci list                  the host's PCI functions, with SR-IOV VF counts and parents
          host sriov set PF N            enable N SR-IOV virtual functions on PF (0: off)

        DSC v3 resource KvmPS/VirtualMachine (kvmps.dsc.resource.json):
          dsc get|test|set    one instance as JSON on stdin, the state as JSON on stdout

        Options:
          --json              machine-readable output (JSON on stdout)
          -h, --help          help for a command: kvmps help COMMAND, kvmps COMMAND --help
          --version           print the version
          --host [USER@]HOST  run the command on HOST through ssh (key-based; or $KVMPS_HOST); before COMMAND
          --identity FILE     the private key ssh offers to --host (or $KVMPS_SSH_KEY)

        The store is $KVMPS_HOME, else /var/lib/kvmps (root) or ~/.local/share/kvmps.
        Exit codes: 0 ok, 1 drift (test), 2 usage, 3 manifest error, 4 operation failed,
                    5 VM not found, 6 environment (kvmps-vmm missing, store locked or unreadable),
                    7 remote host unusable (--host: unreachable, SSH key refused, no kvmps there).

        """;

    public static string? For(string topic) => topic switch
    {
        "apply" => """
            Usage: kvmps apply FILE... [--what-if] [--json]

            Reads the manifests, plans against the host as it is now and runs the plan step by step,
            printing each step as it starts and ends. Stops at the first failing step: the store stays
            consistent, and running apply again (after fixing the cause) continues where it stopped.
            Applying to a host that already matches does nothing.

              --what-if, -n   print the plan and change nothing
              --json          print the results as JSON instead of progress lines

            Exit: 0 done (or nothing to do), 3 manifest error (nothing changed), 4 a step failed.

            """,
        "export" => """
            Usage: kvmps export [NAME...] [-o FILE] [--force] [--json]

            Writes a desired-state manifest (.psd1) describing the VMs that exist now: all of them, or
            those named (wildcards allowed: 'web*'). Each VM's definition and its power state are
            stated, so 'kvmps test FILE' exits 0 until the host changes and 'kvmps apply FILE' on
            another host re-creates the VMs. Without -o the manifest goes to stdout.

              -o, --output FILE   write the manifest to FILE (through a temporary file)
              --force             overwrite FILE when it exists
              --json              one JSON object on stdout: manifest (the text), vms, notFound, warnings
                                  (no -o; a NAME that matches no VM: exit 5 with the object still printed)

            Exit: 0, 4 when FILE exists (without --force) or cannot be written, 5 when a NAME
            matches no VM (nothing is written).

            """,
        "plan" => """
            Usage: kvmps plan FILE... [--json]

            Prints the ordered steps 'kvmps apply' would run now (Remove, Stop, Update, Create, Start, ...).
            Changes nothing. Exit: 0, or 3 for a manifest error.

            """,
        "test" => """
            Usage: kvmps test FILE... [--detailed] [--json] [--quiet]

            Prints True when the host matches the manifests, False when it drifts.
              --detailed      also list each differing property (VM, property, expected, actual)
              --json          {"inDesiredState": ..., "drift": [...]}
              --quiet         print nothing; use the exit status

            Exit: 0 in the desired state, 1 drift, 3 manifest error.

            """,
        "get" => """
            Usage: kvmps get FILE... [--json]

            The VMs the manifests name, with what the manifests ask and what is there now, and the VMs in
            the store the manifests do not name. Exit: 0, or 3 for a manifest error.

            """,
        "vm" => """
            Usage: kvmps vm list|start|stop|restart|suspend|resume|remove|console|setvcpus|setmem|setlimits|attach-disk|detach-disk|attach-nic|detach-nic|attach-iso|eject-iso|attach-pci|detach-pci|boot-order|firmware|new|set|balloon|dvd|vnc|screenshot|addresses|snapshot|save|export|import|upgrade ...

              vm list [--json]
              vm start NAME [--json]
              vm stop NAME [--force] [--json]
              vm restart NAME [--force] [--json]
              vm suspend NAME [--json]
              vm resume NAME [--json]
              vm remove NAME [--force] [--keep-disks] [--json]
              vm console NAME [--no-replay]
              vm log NAME [--tail N] [--json]
              vm setvcpus NAME [COUNT] [--maximum N] [--live|--config] [--json]
              vm setmem NAME [SIZE] [--minimum SIZE] [--maximum SIZE] [--live|--config] [--json]
              vm setlimits NAME [--cpu-weight N] [--cpu-maximum-percent N] [--vmm-overhead-limit SIZE|0] [--live|--config] [--json]
              vm attach-disk NAME PATH|VOLUME [--pool POOL] [--size SIZE] [--format raw|qcow2] [--backing IMAGE] [--read-only] [--live|--config] [--json]
              vm detach-disk NAME PATH [--timeout SECONDS] [--live|--config] [--json]
              vm attach-nic NAME --tap TAP|--bridge BRIDGE|--network NETWORK|--sriov-vf VF [--vlan ID] [--mac MAC] [--live|--config] [--json]
              vm addresses NAME [--json]
              vm detach-nic NAME MAC|TAP [--timeout SECONDS] [--live|--config] [--json]
              vm attach-iso NAME ISO|VOLUME [--pool POOL] [--drive N] [--live|--config] [--json]
              vm eject-iso NAME [--drive N] [--live|--config] [--json]
              vm attach-pci NAME --host DDDD:BB:DD.F|--vfio-user SOCKET [--json]
              vm detach-pci NAME --host DDDD:BB:DD.F|--vfio-user SOCKET [--json]
              vm boot-order NAME DEVICE[,DEVICE...]|default|keep [--first DEVICE] [--once DEVICE|--clear-once] [--json]
              vm firmware NAME [--json]
              vm new FILE|- [--json]
              vm set NAME [--vcpus N] [--memory SIZE] [--autostart on|off] ... [--json]
              vm balloon NAME [SIZE] [--json]
              vm dvd list NAME [--json]
              vm dvd add NAME [ISO | VOLUME --pool POOL] [--json]
              vm dvd remove NAME [--drive N] [--json]
              vm vnc NAME [--json]
              vm screenshot NAME FILE.png|- [--timeout SECONDS] [--json]
              vm snapshot create NAME [SNAPSHOT] [--allow-raw-disks] [--incremental] [--json]
              vm snapshot list NAME [--json]
              vm snapshot restore NAME SNAPSHOT [--json]
              vm snapshot remove NAME SNAPSHOT [--include-children] [--json]
              vm save NAME [--json]
              vm export NAME DIR [--json]
              vm import DIR [--copy] [--new-id] [--json]
              vm upgrade NAME...|--all [--timeout SECONDS] [--json]
              vm migrate NAME --to [user@]HOST [--identity KEY] [--downtime MS] [--bandwidth BYTES_PER_S] [--auto-converge] [--include-storage] [--timeout SECONDS] [--json]

            """,
        "vm list" => "Usage: kvmps vm list [--json]\n\nAll VMs in the store: name, state, vCPUs, memory, VMM pid, uptime, autostart.\n",
        "vm start" => "Usage: kvmps vm start NAME [--json]\n\nStarts the VM's kvmps-vmm and waits until the guest runs. Exit 4 if it fails to start, 5 if there is no such VM.\n",
        "vm stop" => "Usage: kvmps vm stop NAME [--force] [--json]\n\nPresses the ACPI power button and waits for the guest to power off, then stops it by force.\n  --force   power off at once\n",
        "vm restart" => "Usage: kvmps vm restart NAME [--force] [--json]\n\nShuts the VM down as 'vm stop' does (a VM that is off is just started), then starts it again with its stored\ndefinition. 'reboot' is the same command.\n  --force   power off at once instead of the ACPI power button\n",
        "vm suspend" => "Usage: kvmps vm suspend NAME [--json]\n\nPauses every vCPU of a running VM; memory and devices stay as they are (a paused VM is left paused).\n",
        "vm resume" => "Usage: kvmps vm resume NAME [--json]\n\nLets the vCPUs of a paused VM run again (a running VM is left running).\n",
        "vm remove" => "Usage: kvmps vm remove NAME [--force] [--keep-disks] [--json]\n\nRemoves the VM from the store with its checkpoints (their internal qcow2 snapshots are deleted from the disks\nthat stay). A running VM needs --force (it is powered off first).\n  --keep-disks   move the VM's disk folder to the store's retained-disks folder instead of deleting it\n",
        "vm setvcpus" => """
            Usage: kvmps vm setvcpus NAME [COUNT] [--maximum N] [--live|--config] [--json]

            Sets the VM's vCPU count (as virsh setvcpus). A running or paused VM gets a count within the maximum it
            was started with (VcpuMaximum) at once, through ACPI CPU hot-plug, without a restart; the change is
            always stored. A count above VcpuMaximum is refused naming the limit; a higher maximum needs a restart
            (Set-KvmVcpu -Maximum, or VcpuMaximum in a manifest).
              --live     change the running VM now (and store it); fails, changing nothing, if it is not running or
                         the count is beyond the running VM's maximum
              --config   store it only; the running VM keeps its vCPUs until it is restarted
              --maximum N  also set VcpuMaximum (the hot-add ceiling; a running VM gets it at restart); COUNT may
                         then be left out (Set-KvmVcpu -Maximum)
            Exit: 0, 4 refused (beyond the maximum, not running with --live), 5 no such VM.

            """,
        "vm setmem" => """
            Usage: kvmps vm setmem NAME [SIZE] [--minimum SIZE] [--maximum SIZE] [--live|--config] [--json]

            Sets the memory the VM runs with (MemoryStartupBytes; as virsh setmem). SIZE has a unit, 1024-based:
            512M, 1G, 1.5GiB, 768MB. A running VM grows live up to MemoryMaximumBytes where its kvmps-vmm resizes
            memory (virtio-mem); otherwise the size is stored and taken at the next start. Shrinking a running VM
            below the memory it booted with is the balloon's job (Invoke-KvmBalloon).
              --live     change the running VM now (and store it); fails, changing nothing, if it cannot
              --config   store it only
              --minimum SIZE, --maximum SIZE
                         also set MemoryMinimumBytes / MemoryMaximumBytes (Set-KvmMemory); SIZE may then be left out
            Exit: 0, 2 bad SIZE, 4 refused, 5 no such VM.

            """,
        "vm attach-disk" => """
            Usage: kvmps vm attach-disk NAME PATH|VOLUME [--pool POOL] [--size SIZE] [--format raw|qcow2] [--backing IMAGE]
                                        [--read-only] [--live|--config] [--json]

            Attaches a disk image (as virsh attach-disk). A running or paused VM gets it at once as a hot-plugged
            virtio-blk device (ACPI PCI hot-plug, same VMM process); the definition is changed once the VMM has it.
            PATH is absolute or ./relative to the working directory; a plain name (data.qcow2) is in the VM's disk folder.
              --pool POOL      PATH (and --backing) name a volume of that storage pool (kvmps vol list POOL); the
                               definition keeps the pool and volume, not the path
              --size SIZE      create a new image of this size first (e.g. 1G); it must not exist
              --format F       raw or qcow2 (default: qcow2 for *.qcow2 or --backing, raw otherwise)
              --backing IMAGE  with --size: a qcow2 overlay on IMAGE
              --read-only      the guest cannot write it
              --live           hot-plug it now; fails, changing nothing, if the VM is not running or cannot
              --config         store it only; a running VM gets it at its next start
            A kvmps-vmm that cannot hot-plug: exit 4 saying so (stop the VM, or use --config).
            Exit: 0, 2 bad option, 4 refused (image missing, the VMM refused it), 5 no such VM.

            """,
        "vm detach-disk" => """
            Usage: kvmps vm detach-disk NAME PATH [--timeout SECONDS] [--live|--config] [--json]

            Detaches a disk (as virsh detach-disk); the image file is kept. PATH as in the definition or the image's
            full path. A running VM's guest is asked to release the device (ACPI eject) and the definition changes
            once it has; a guest that keeps it past --timeout (default 30 s) leaves the disk attached and defined:
            exit 4 saying so (run it again later, or stop the VM first). A disk the VM was started with leaves it
            live too, except its first (boot) disk: --live refuses that one (exit 4 naming why); without --live it
            leaves the definition for the next start.
              --live     remove it from the running VM now; fails, changing nothing, if it is not running or
                         the disk is the boot disk
              --config   remove it from the definition only; a running VM keeps it until it is restarted
            Exit: 0, 2 bad option, 4 refused or the guest did not release it, 5 no such VM.

            """,
        "vm attach-nic" => """
            Usage: kvmps vm attach-nic NAME --tap TAP|--bridge BRIDGE|--network NETWORK|--sriov-vf DDDD:BB:DD.F [--vlan ID] [--mac MAC] [--live|--config] [--json]

            Adds a virtio-net adapter on an existing tap, on a bridge (the VMM creates a tap on it) or on a KvmPS
            network (its bridge; the network must exist, and be started when the VM starts), as virsh
            attach-interface. A running VM gets it hot-plugged at once. Without --mac it gets a stable generated MAC.
              --sriov-vf VF   an SR-IOV virtual function of a host NIC instead (kvmps host pci list shows VFs): at
                              the VM's next start its MAC (and --vlan ID, 1-4094) is set on the physical function
                              over netlink and the VF is passed through with vfio-pci (docs/passthrough-host.md;
                              not yet run on SR-IOV hardware)
              --live / --config   as for attach-disk
            Exit: 0, 2 bad option, 4 refused, 5 no such VM.

            """,
        "vm detach-nic" => """
            Usage: kvmps vm detach-nic NAME MAC|TAP [--timeout SECONDS] [--live|--config] [--json]

            Removes the network adapter with this MAC address or tap name (as virsh detach-interface). On a running
            VM the guest releases it first, as for detach-disk (--timeout, default 30 s), also for an adapter the
            VM was started with.
            Exit: 0, 2 bad option, 4 refused, no such adapter, or the guest did not release it, 5 no such VM.

            """,
        "vm attach-pci" => """
            Usage: kvmps vm attach-pci NAME --host DDDD:BB:DD.F|--vfio-user SOCKET [--json]

            Gives the VM a PCI device (as Add-KvmPciPassthrough): a running VM gets it at once (ACPI hot-plug), else
            at its next start.
              --host DDDD:BB:DD.F   a host PCI function, passed through with kernel VFIO; it must exist and its IOMMU
                                    group be free to give away (kvmps binds it to vfio-pci at the start or hot-plug).
                                    Hot-plug of a host function has not run on real hardware (no IOMMU here).
              --vfio-user SOCKET    a device served by another process over vfio-user; its server must listen on
                                    SOCKET at the start or hot-plug (docs/devices.md "Passthrough")
            Exit: 0, 2 bad option, 4 refused (no such device, IOMMU group in use, already attached), 5 no such VM.

            """,
        "vm detach-pci" => """
            Usage: kvmps vm detach-pci NAME --host DDDD:BB:DD.F|--vfio-user SOCKET [--json]

            Takes a passthrough device away from the VM. On a running VM the guest releases it first, as for
            detach-disk (30 s by default); a host function then goes back to its driver.
            Exit: 0, 2 bad option, 4 the VM has no such device, 5 no such VM.

            """,
        "vm attach-iso" => """
            Usage: kvmps vm attach-iso NAME ISO|VOLUME [--pool POOL] [--drive N] [--live|--config] [--json]

            Puts an ISO 9660 image into the VM's DVD drive N (default 0); a VM without a DVD drive gets one (a running
            VM at its next start). A running VM's drive changes at once and the guest is told (virsh change-media).
            ISO is absolute or ./relative to the working directory; a plain name is in the VM's disk folder. It must
            exist, be ISO 9660, and lie in the store, a storage pool or an allowed folder (docs/confinement.md).
              --pool POOL   ISO names a volume of that storage pool
              --drive N     the drive (0 = the first)
            Exit: 0, 2 bad option, 4 refused (not an ISO, the guest has locked the tray, no such drive), 5 no such VM.

            """,
        "vm eject-iso" => """
            Usage: kvmps vm eject-iso NAME [--drive N] [--live|--config] [--json]

            Takes the medium out of DVD drive N (default 0); the drive stays, empty. On a running VM the guest is
            told at once; a tray the guest has locked is refused with the VMM's reason.
            Exit: 0, 2 bad option, 4 refused, 5 no such VM.

            """,
        "vm boot-order" => """
            Usage: kvmps vm boot-order NAME DEVICE[,DEVICE...]|default|keep [--first DEVICE] [--once DEVICE|--clear-once] [--json]

            Sets the order SeaBIOS tries devices in: dvd, disk, network (e.g. dvd,disk). 'default' goes back to the
            boot disk first; 'keep' leaves the order and only sets --once. Firmware-booted VMs only; takes effect
            at the next start.
              --first DEVICE  move DEVICE to the front of the order (with 'keep': of the stored order)
              --once DEVICE   boot from DEVICE at the next start only (later starts use the order again)
              --clear-once    drop a pending one-time boot device
            Exit: 0, 2 bad option, 4 refused, 5 no such VM.

            """,
        "vm firmware" => """
            Usage: kvmps vm firmware NAME [--json]

            How the VM boots (built-in guest, kernel, firmware), its boot order and the one-time boot device of its
            next start (Get-KvmFirmware). Exit: 0, 5 no such VM.

            """,
        "vm new" => """
            Usage: kvmps vm new FILE|- [--json]

            Stores a new VM from a definition in the format of the store's vm.json (FILE, or '-' for stdin), creating
            its disk images; the VM is not started. The definition is checked as a manifest is. New-KvmVm -HostName
            sends its definition this way. Exit: 0, 2 bad option, 4 refused (invalid definition, name taken).

            """,
        "vm set" => """
            Usage: kvmps vm set NAME [options] [--json]

            Changes stored settings (Set-KvmVm); a running VM gets them at its next restart.
              --vcpus N, --max-vcpus N                    vCPU count and hot-add maximum
              --memory SIZE, --min-memory SIZE, --max-memory SIZE
              --balloon on|off, --autostart on|off
              --notes TEXT
              --log-max SIZE|0, --log-files N             log rotation (0: never rotate)
              --kernel PATH, --initrd PATH, --cmdline TEXT  direct kernel boot ('' for --kernel: the built-in guest)
            Sizes need a unit (512M, 1G). Exit: 0, 2 bad option, 4 refused, 5 no such VM.

            """,
        "vm balloon" => """
            Usage: kvmps vm balloon NAME [SIZE] [--json]

            With SIZE, sets the memory the balloon should leave the guest (within the VM's minimum and maximum; live
            for a running VM with a balloon, else stored as its startup memory). Then prints the VM's memory: target,
            range, booted size, balloon size, resident memory (Invoke-KvmBalloon). Exit: 0, 2 bad option, 4 refused, 5 no such VM.

            """,
        "vm dvd" or "vm dvd list" or "vm dvd add" or "vm dvd remove" => """
            Usage: kvmps vm dvd list NAME [--json]
                   kvmps vm dvd add NAME [ISO | VOLUME --pool POOL] [--json]
                   kvmps vm dvd remove NAME [--drive N] [--json]

            list     the VM's CD/DVD drives and the ISO in each
            add      a new drive, with the ISO (or a volume of POOL) or empty; a running VM gets it at its next start
            remove   drive N (0 = the first; may be left out when the VM has one drive); the ISO file is kept
            Media go in and out with 'vm attach-iso' and 'vm eject-iso'. Exit: 0, 2 bad option, 4 refused, 5 no such VM.

            """,
        "vm vnc" => """
            Usage: kvmps vm vnc NAME [--json]

            Prints where the VM's VNC server listens: unix:PATH (always, in the VM's folder) and tcp:ADDR:PORT
            when the display asks for it, and how to connect a viewer (vncviewer PATH). A VM without a display
            is refused.
            Exit: 0, 4 no display, 5 no such VM.

            """,
        "vm screenshot" => """
            Usage: kvmps vm screenshot NAME FILE.png|- [--timeout SECONDS] [--json]

            Saves the running VM's screen as PNG, read through its VNC server (default timeout 10 s).
            FILE '-' (with --json): no file; the answer carries the PNG as pngBase64 (Get-KvmVmScreenshot -HostName).
            Exit: 0, 2 bad option, 4 no display, not running or no picture in time, 5 no such VM.

            """,
        "vm snapshot" => """
            Usage: kvmps vm snapshot create|list|restore|remove NAME ...

              create NAME [SNAPSHOT] [--allow-raw-disks] [--incremental] [--json]
                  Takes a checkpoint. Running or paused: memory and device state, and an internal snapshot of every
                  qcow2 disk at the same instant; off: the qcow2 disks only. SNAPSHOT defaults to "NAME - (date - time)".
                  A raw disk is refused unless --allow-raw-disks (the disks are then not restored with it).
                  --incremental writes only the memory changed since the previous checkpoint this run of the VM's
                  VMM took or was restored from; that checkpoint cannot then be removed while this one stays.
              list NAME [--json]
                  The VM's checkpoints, oldest first: name, type (Standard with memory, DiskOnly), time, parent, size.
              restore NAME SNAPSHOT [--json]
                  Applies the checkpoint; the VM's current state is lost (a running VM is turned off first). With
                  memory the VM runs again from the checkpoint; without, disks and settings go back and it stays off.
              remove NAME SNAPSHOT [--include-children] [--json]
                  Removes the checkpoint (children move up to its parent, or go too with --include-children); one an
                  incremental checkpoint builds on is refused, naming it, unless --include-children.
                  A checkpoint with disk snapshots can only be removed while the VM is off or saved.
            Exit: 0, 4 if the operation failed (no such checkpoint, name taken, raw disk, wrong state), 5 no such VM,
            6 corrupt checkpoint metadata (the message names the file).

            """,
        "vm snapshot create" or "vm snapshot list" or "vm snapshot restore" or "vm snapshot remove" => For("vm snapshot"),
        "vm save" => "Usage: kvmps vm save NAME [--json]\n\nSaves a running or paused VM's memory and device state into the store and stops its VMM; the VM is Saved.\n'kvmps vm start NAME' resumes it, 'kvmps autostart' resumes every saved VM, 'kvmps vm stop NAME --force' discards the saved state.\n",
        "vm export" => "Usage: kvmps vm export NAME DIR [--json]\n\nCopies a VM that is off or saved into DIR/NAME: definition, disks (also those outside the store), checkpoints, saved state.\nDIR/NAME must not exist or be empty.\n",
        "vm import" => "Usage: kvmps vm import DIR [--copy] [--new-id] [--json]\n\nBrings an exported VM (DIR/NAME, or a DIR holding exactly one) into the store.\n  --copy     copy it and keep the export (default: move it)\n  --new-id   a clone: new MAC addresses and a new vsock CID\nA VM of the same name in the store is an error.\n",
        "vm upgrade" => "Usage: kvmps vm upgrade NAME...|--all [--timeout SECONDS] [--json]\n\nLive upgrade: moves each running VM (--all: every running VM) into a new kvmps-vmm started from the binary on disk,\nwhile its guest keeps running (guest memory, the open disk images, taps and vsock sockets are handed over, not copied). A VM whose upgrade fails runs on in its old VMM.\n  --timeout SECONDS   how long one VM's hand-over may take before it is cancelled (default 60)\n",
        "vm migrate" => """
            Usage: kvmps vm migrate NAME --to [user@]HOST [--identity KEY] [--downtime MS] [--bandwidth BYTES_PER_S]
                                    [--auto-converge] [--include-storage] [--tunnel] [--migration-address ADDR]
                                    [--timeout SECONDS] [--json] [--progress]

            Live migration of a running or paused VM to another host (as virsh migrate --live, Hyper-V Move-VM): the
            destination's kvmps, reached over ssh, receives the definition and starts a receiving kvmps-vmm on a TCP
            port of the address ssh reached it by; the stream goes straight there (not encrypted), authenticated by a
            one-time token given over ssh. Once the VM runs there it leaves this host (a paused VM stays paused there).
            Any failure leaves it running here and removes the half-made VM there. A VM with disks needs the same disk
            paths on both hosts (shared storage), or --include-storage.
              --to [user@]HOST      the destination (kvmps on its PATH, key-based ssh; KVMPS_SSH_CONFIG applies)
              --identity KEY        the private key ssh offers (else KVMPS_SSH_KEY, else ssh's own choice)
              --downtime MS         the longest pause at the hand-over (default 300)
              --bandwidth N         send at most N bytes per second during pre-copy
              --auto-converge       throttle the vCPUs when the guest dirties memory faster than the link sends it
              --include-storage     copy the disks live too, into the destination store's disk folder of the VM (same
                                    file names, none may exist there; space checked first); the images here are kept
              --tunnel              send the stream through the ssh connection instead (encrypted, no port opened;
                                    for hosts a firewall separates but for ssh)
              --migration-address ADDR
                                    the destination's address to listen on and be reached at (default: the one ssh
                                    reached it by)
              --timeout SECONDS     cancel the move after this long (default 600)
              --progress            progress lines 'kvmps: progress PERCENT STATUS' on stderr, also with --json
            Ctrl+C (SIGINT) or SIGTERM cancels the move before the hand-over, as --timeout does: the VM runs on here.
            Exit 0 moved, 4 failed (the VM runs on here), 5 no such VM, 7 the destination cannot be reached over ssh.

            """,
        "vm console" => "Usage: kvmps vm console NAME [--no-replay]\n\nAttaches this terminal to the VM's serial console; type Ctrl-] to detach (the VM keeps running).\nWith --host it runs there through ssh -t (ssh's ~ escapes off: Ctrl-] detaches as here).\n  --no-replay   do not replay the last 64 KiB of console output first\n",
        "vm log" => "Usage: kvmps vm log NAME [--tail N] [--json]\n\nPrints the VM's serial console output (its serial.log), one line each; nothing for a VM that never ran.\n  --tail N   only the last N lines\n  --json     {\"name\": NAME, \"lines\": [...]}\nExit: 0, 2 bad option, 5 no such VM.\n",
        "disk" => """
            Usage: kvmps disk create PATH [--size SIZE] [--format raw|qcow2] [--backing IMAGE] [--pool POOL] [--json]

            Creates a sparse disk image at PATH (New-KvmDiskImage; it never overwrites a file). SIZE as 1G, 512M or
            4096B, a multiple of 512; optional with --backing (then the backing image's size). The format defaults to
            qcow2 for *.qcow2 names or with --backing, raw otherwise; a backing image needs qcow2.
              --pool POOL   PATH is a volume name in POOL, --backing a volume of that pool
              --json        {"path", "format", "sizeBytes", "fileSizeBytes", "backingPath"}
            Exit: 0, 2 bad option or request, 4 the file exists or the pool refused it.

            """,
        "dsc" => """
            Usage: kvmps dsc get|test|set < instance.json

            The DSC v3 command-resource protocol of KvmPS/VirtualMachine (see kvmps.dsc.resource.json).
            Reads one instance (a JSON object) on stdin. Properties: Name (key), Ensure (Present|Absent),
            State (Running|Off|Paused), StartupMemory, MinimumMemory, MaximumMemory (bytes), ProcessorCount,
            MaximumProcessorCount, RestartIfNeeded, Notes, Autostart, CpuRelativeWeight, CpuMaximumPercent,
            VmmOverheadLimitBytes, KernelPath, InitrdPath, KernelArguments.
            Only the properties given are enforced.

              get    the actual state, one JSON line
              test   the actual state with _inDesiredState, then a JSON array of the differing properties
              set    enforces the instance; the state after, then a JSON array of the changed properties

            Exit: 0 (test also when not in the desired state), 3 bad input, 4 set failed.

            """,
        "autostart" => """
            Usage: kvmps autostart [--json]

            Starts every VM whose definition has Autostart = $true and that is not running, and resumes every
            saved VM (kvmps vm save, Save-KvmVm), a few at a time.
            Meant for a systemd unit (docs/kvmps-autostart.service). Exit: 0, or 4 if any VM failed to start.

            """,
        _ => PoolCommands.Help(topic) ?? NetCommands.Help(topic) ?? HostCommands.Help(topic) ?? VmLiveCommands.LimitsHelp(topic),
    };
}
