using KvmPS.Acpi;
using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Display;
using KvmPS.Devices.Legacy;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;
using KvmPS.Interop;
using KvmPS.State;
using KvmPS.Vm.Boot;
using KvmPS.Vm.Firmware;
using KvmPS.Vmm;

namespace KvmPS.Vm;

/// <summary>
/// One KVM virtual machine: VM fd, guest memory, in-kernel irqchip and PIT, the legacy devices, and one thread per
/// vCPU. Built and booted by <see cref="Create"/>; everything it created is released by <see cref="Dispose"/>, also
/// when creation fails half-way.
/// </summary>
public sealed partial class VirtualMachine : IDisposable, IMachineControl
{
    // Replaced whole (copy on write, under _stateLock) when a vCPU is hot-added: readers iterate a stable array.
    private volatile Vcpu[] _vcpus = [];
    private DirtyRings? _dirtyRings;

    /// <summary>Where dirty pages of the RAM and VRAM slots come from: the vCPUs' dirty rings or KVM's bitmaps.</summary>
    public ISlotDirtyLog DirtyLog { get; private set; } = null!;

    /// <summary>The dirty ring's entries per vCPU, or null when the machine uses the dirty bitmap.</summary>
    public int? DirtyRingEntries => _dirtyRings?.EntriesPerVcpu;

    /// <summary>A vCPU's dirty ring is full: collect them all (the vCPU thread calls this, then enters KVM_RUN again).</summary>
    internal void CollectDirtyRings() => _dirtyRings?.CollectFull();
    private int _runSize;                    // kvm_run mapping size, for vCPUs created later
    private kvm_cpuid_entry2[] _supportedCpuid = [];
    /// <summary>Every device-side part of the machine, for the capability interfaces (IPausable, IPersistent) they implement.</summary>
    private readonly List<object> _platformDevices = new();
    private DeviceSet? _deviceSet;
    private readonly object _stateLock = new();
    private readonly ManualResetEventSlim _resumed = new(true);
    private readonly TaskCompletionSource<VmExit> _exit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopRequested, _pauseRequested;
    private bool _partsPaused; // under _stateLock
    private int _parked;
    private readonly ManualResetEventSlim _parkedChanged = new(false, spinCount: 0); // set by each park, for Pause
    private KvmSystemHandle? _system;
    private KvmVmHandle? _vm;
    private IoEventLoop? _ioLoop;       // PCI: device I/O thread (ioeventfd notifications)
    private KvmMsiRouter? _msiRouter;   // PCI: MSI-X vectors as KVM GSI routes + irqfds
    private KvmIoEventRegistrar? _ioEvents; // PCI: queue notifications as ioeventfds on _ioLoop
    private FirmwareImage? _firmware;   // firmware boot: the image mapped below 4 GiB

    public MachineConfig Config { get; }
    public GuestMemory Memory { get; private set; } = null!;
    public PortIoBus PortBus { get; } = new();
    public MmioBus MmioBus { get; } = new();
    public Serial16550 Serial { get; private set; } = null!;
    /// <summary>The i8042 with the PS/2 keyboard and mouse (VNC input).</summary>
    public I8042 Keyboard { get; private set; } = null!;
    /// <summary>The first PCI device that is a display (the VNC server's picture), or null.</summary>
    public KvmPS.Devices.Display.IFramebuffer? Framebuffer => Pci?.Devices.Select(d => d.Device).OfType<KvmPS.Devices.Display.IFramebuffer>().FirstOrDefault();
    public AcpiPm Pm { get; private set; } = null!;
    /// <summary>The CPU hot-plug controller the DSDT's processor objects read (Acpi/CpuHotplugController).</summary>
    public CpuHotplugController CpuHotplug { get; private set; } = null!;
    public PostCode PostCode { get; } = new();
    /// <summary>PCI bus 0 (host bridge at 00:00.0, devices in slots 1-31).</summary>
    public PciBus Pci { get; private set; } = null!;
    // The configured devices the machine has (not the removed ones), in slot order; replaced whole (copy on write).
    private ConfiguredDevice[] _configured = [];
    /// <summary>The configured devices in slot order, then the hot-plugged ones (a snapshot of the moment).</summary>
    public IReadOnlyList<IVirtioDevice> Devices => [.. ConfiguredDevices.Select(d => d.Device), .. HotpluggedDevices.Select(d => d.Device).OfType<IVirtioDevice>()];
    public IReadOnlyList<Vcpu> Vcpus => _vcpus;
    public VmState State { get; private set; } = VmState.Created;
    /// <summary>The snapshot the next diff snapshot is taken on (the last one written or restored), or null: no diff possible yet.</summary>
    public SnapshotBaseline? SnapshotBaseline { get; internal set; }
    public DateTime? StartedUtc { get; private set; }
    public LoadedKernel? Kernel { get; private set; }
    /// <summary>Firmware boot: the fw_cfg device SeaBIOS reads (null for direct kernel boot).</summary>
    public FwCfg? FwCfg { get; private set; }
    /// <summary>Completes once, when the VM stops running for any reason.</summary>
    public Task<VmExit> Exited => _exit.Task;
    public event Action<VmState>? StateChanged;

    internal bool StopRequested => _stopRequested;
    internal bool PauseRequested => _pauseRequested;
    internal KvmVmHandle Handle => _vm!;

    private VirtualMachine(MachineConfig config) => Config = config;

    /// <summary>Creates the VM and loads the guest; the vCPUs do not run until <see cref="Start"/>. Same as <see cref="MachineBuilder.Boot"/>.</summary>
    public static VirtualMachine Create(MachineConfig config, ByteSink serialOutput) => new MachineBuilder(config, serialOutput).Boot();

    /// <summary>Builds the hardware only (see <see cref="MachineBuilder"/>); on failure everything created so far is released.</summary>
    /// <param name="logDirtyPages">RAM slots log dirty pages from the start (a restore tracks them at once: one memory
    /// slot change fewer on its critical path).</param>
    internal static VirtualMachine BuildHardware(MachineConfig config, ByteSink serialOutput, bool logDirtyPages = false)
    {
        config.Validate();
        var machine = new VirtualMachine(config);
        try
        {
            machine.BuildHardwareCore(serialOutput, logDirtyPages);
            return machine;
        }
        catch
        {
            machine.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The machine without a guest: KVM VM, memory, irqchip, PIT, buses, devices, and the vCPUs with CPUID, MSRs and
    /// LAPIC pins set. Firmware boot maps its image and fw_cfg here, as they are hardware a restored VM needs too.
    /// </summary>
    private void BuildHardwareCore(ByteSink serialOutput, bool logDirtyPages)
    {
        _firmware = Config.FirmwarePath is null ? null : FirmwareImage.Load(Config.FirmwarePath);

        if (EarlyKvmVm.TryTake(Config.KvmDevicePath, out var earlySystem, out var earlyVm)) (_system, _vm) = (earlySystem, earlyVm);
        else _system = Kvm.OpenSystem(Config.KvmDevicePath);
        Diagnostics.StartupTimeline.Mark("kvm-vm");
        int maxVcpus = Math.Max(Kvm.CheckExtension(_system, KvmConstants.KVM_CAP_MAX_VCPUS), Kvm.CheckExtension(_system, KvmConstants.KVM_CAP_NR_VCPUS));
        if (Config.EffectiveMaxVcpus > maxVcpus && maxVcpus > 0)
            throw new ArgumentOutOfRangeException(nameof(Config.MaxVcpus), $"{Config.EffectiveMaxVcpus} vCPUs requested but this host's KVM allows {maxVcpus}.");
        _vm ??= Kvm.CreateVm(_system);
        Kvm.SetTssAddr(_vm, _firmware?.KvmTssAddress ?? MemoryLayout.KvmTssAddress);
        Kvm.SetIdentityMapAddr(_vm, _firmware?.KvmIdentityMapAddress ?? MemoryLayout.KvmIdentityMapAddress);

        // Every memory slot before the irqchip and PIT: KVM charges the first slot change after KVM_CREATE_IRQCHIP or
        // KVM_CREATE_PIT2 a fixed wait (about 7 ms on the nested test host, 0.1-0.2 ms for any other change, whatever
        // the size), and a machine whose slots all exist by then never pays it at start (a booted VM pays it off the
        // critical path later: PayFirstSlotChangeInBackground).
        // The dirty ring must exist before the first vCPU; without it, KVM's per-slot bitmaps.
        if (Config.DirtyRingEntries > 0)
        {
            // Measured on the nested PVM host: a guest drawing into the framebuffer slot with the ring on stops making
            // progress. Until that is understood, a display keeps the bitmap (docs/vmm.md).
            if (Config.Devices.Any(d => d is DisplayDeviceConfig))
                throw new DirtyRingException("dirty_ring_entries cannot be used with a display device yet (its framebuffer slot stalls the guest with the ring on the test host); leave it unset");
            _dirtyRings = DirtyRings.Enable(_vm, Config.DirtyRingEntries);
        }
        DirtyLog = (ISlotDirtyLog?)_dirtyRings ?? new BitmapDirtyLog(_vm);
        Memory = GuestMemory.Create(Config.MemoryBytes, Config.Memory, Config.HotplugMemoryBytes, Config.HotplugLowLimit);
        Memory.RegisterWith(_vm, logDirtyPages, DirtyLog);
        _firmware?.MapInto(_vm, Memory);

        Diagnostics.StartupTimeline.Mark("slots");
        Kvm.CreateIrqchip(_vm);
        Kvm.CreatePit2(_vm, KvmConstants.KVM_PIT_SPEAKER_DUMMY);
        // KVM's default routing leaves the PIT on IOAPIC pin 0; our tables put it on pin 2. Commit before any vCPU runs.
        _msiRouter = new KvmMsiRouter(_vm, DeviceLogger);
        _msiRouter.CommitIrqchipRoutes();

        Serial = new Serial16550(new IrqLine(this, Serial16550.Com1Irq), serialOutput);
        Pm = new AcpiPm(this, new IrqLine(this, MemoryLayout.SciIrq));
        var i8042 = Keyboard = new I8042(this, new IrqLine(this, I8042.KeyboardIrq), new IrqLine(this, I8042.MouseIrq));
        var rtc = new CmosRtc(Config.MemoryBytes);
        var debugExit = new DebugExit(this);
        PortBus.Register(Serial, Serial16550.Com1Port, 8);
        PortBus.Register(i8042, I8042.DataPort, 5);
        PortBus.Register(rtc, CmosRtc.IndexPort, 2);
        PortBus.Register(debugExit, DebugExit.Port, 4);
        PortBus.Register(PostCode, PostCode.Port, 1);
        PortBus.Register(Pm, AcpiPm.BasePort, AcpiPm.Length);
        CpuHotplug = new CpuHotplugController(Config.EffectiveMaxVcpus, Config.VcpuCount, Pm);
        CpuHotplug.Ejected += id => _vcpus.FirstOrDefault(v => v.Id == id)?.Eject(); // the guest released it: park it
        PortBus.Register(CpuHotplug, MemoryLayout.CpuHotplugPort, CpuHotplugController.Length);
        BuildPciHotplug();
        _platformDevices.AddRange([Serial, Pm, i8042, rtc, debugExit, PostCode]);
        BuildPci();

        if (_firmware is not null)
        {
            FwCfg = FirmwareLoader.Install(_firmware, Memory, PortBus, MmioBus, Pci, Config, GuestAcpiConfig());
            _platformDevices.Add(FwCfg);
        }

        _deviceSet = new DeviceSet(_platformDevices, Pci, _ioLoop);

        _runSize = Kvm.GetVcpuMmapSize(_system);
        _supportedCpuid = Kvm.GetSupportedCpuid(_system).ToArray();
        VcpuKick.EnsureHandlerInstalled();
        for (int id = 0; id < Config.VcpuCount; id++) CreateVcpu(id, setTsc: true);
    }

    /// <summary>
    /// A KVM vCPU set up like every boot vCPU: CPUID with its APIC ID and the topology of the maximum, MSRs, LAPIC pins.
    /// Not the BSP, it waits in KVM for the guest's INIT/SIPI. A hot-added vCPU keeps the TSC KVM synchronizes at
    /// creation (writing 0 would put it behind the running ones).
    /// </summary>
    private Vcpu CreateVcpu(int id, bool setTsc)
    {
        var handle = Kvm.CreateVcpu(_vm!, (uint)id);
        Vcpu vcpu;
        try
        {
            _dirtyRings?.Add(handle);
            vcpu = new Vcpu(this, handle, id, _runSize);
        }
        catch { handle.Dispose(); throw; }
        _vcpus = [.. _vcpus, vcpu];
        Kvm.SetCpuid2(handle, CpuSetup.CpuidFor(_supportedCpuid, (uint)id, Config.EffectiveMaxVcpus));
        CpuSetup.SetupMsrs(handle, _supportedCpuid, setTsc);
        CpuSetup.SetupLapic(handle);
        return vcpu;
    }

    /// <summary>vCPUs the guest has (present in the hot-plug controller): the boot ones, plus hot-added, minus ejected.</summary>
    public int PresentVcpuCount
    {
        get
        {
            int n = 0;
            for (int i = 0; i < CpuHotplug.MaxVcpus; i++) if ((CpuHotplug.StatusOf(i) & CpuHotplugController.STATUS_PRESENT) != 0) n++;
            return n;
        }
    }

    /// <summary>
    /// Changes the guest's vCPUs to <paramref name="count"/> while it runs (or is paused). Up: each missing vCPU is
    /// created (KVM makes an AP "uninitialized") or, ejected before, released from its park, and marked present with an
    /// insert event: it runs only once the guest sends INIT/SIPI. Down: the highest vCPUs get a removal event; the guest
    /// offlines and ejects them, and each ejected vCPU's thread parks outside KVM, its CPU uninitialized, until it is
    /// added again. Returns at once: the guest acts on the event in its own time; a removal it never acknowledges stays
    /// pending (the CPU present and running, nothing torn down), see <see cref="PendingVcpuChanges"/>.
    /// </summary>
    public void SetVcpuCount(int count)
    {
        int max = Config.EffectiveMaxVcpus;
        if (count < 1 || count > max)
            throw new ArgumentOutOfRangeException(nameof(count), $"vCPU count {count} is outside 1 to the maximum {max} (max_vcpus; raising it needs a restart).");
        lock (_stateLock)
        {
            if (State is not (VmState.Running or VmState.Paused)) throw new InvalidOperationException($"vCPUs can be changed only while the VM runs or is paused (it is {State}).");
            _requestedVcpuCount = count;
            for (int id = 1; id < max; id++)
            {
                bool present = (CpuHotplug.StatusOf(id) & CpuHotplugController.STATUS_PRESENT) != 0;
                if (id < count && !present)
                {
                    if (_vcpus.FirstOrDefault(v => v.Id == id) is { } ejected) ejected.Reinsert();
                    else CreateVcpu(id, setTsc: false).Start();
                    CpuHotplug.Insert(id);
                }
                else if (id >= count && present && (CpuHotplug.StatusOf(id) & CpuHotplugController.STATUS_REMOVING) == 0)
                    CpuHotplug.RequestRemoval(id);
            }
        }
    }

    /// <summary>
    /// CPUs with an insert event the guest has not acknowledged, and CPUs whose removal it has not ejected yet: a
    /// removal the guest acknowledged (REMOVING cleared) is still pending until its _EJ0 has run, so a CPU above the
    /// last <c>vcpu.set</c> count that is still present counts as removing.
    /// </summary>
    public (IReadOnlyList<int> Inserting, IReadOnlyList<int> Removing) PendingVcpuChanges
    {
        get
        {
            var inserting = new List<int>();
            var removing = new List<int>();
            int requested = Volatile.Read(ref _requestedVcpuCount);
            for (int i = 0; i < CpuHotplug.MaxVcpus; i++)
            {
                byte st = CpuHotplug.StatusOf(i);
                if ((st & CpuHotplugController.STATUS_INSERTING) != 0) inserting.Add(i);
                if ((st & CpuHotplugController.STATUS_PRESENT) != 0 && ((st & CpuHotplugController.STATUS_REMOVING) != 0 || i >= requested)) removing.Add(i);
            }
            return (inserting, removing);
        }
    }

    /// <summary>The count the last <c>vcpu.set</c> asked for (none yet: no limit).</summary>
    private int _requestedVcpuCount = int.MaxValue;

    /// <summary>
    /// Boot step: loads the kernel (or the built-in guest), writes the boot tables and puts the BSP at the entry point.
    /// Firmware boot needs nothing here: the vCPUs start from KVM's reset state at the reset vector.
    /// </summary>
    internal void LoadGuest(byte[] kernelImage)
    {
        if (_firmware is not null) return;
        // Boot calls this on the RAM BuildHardware just mapped, which nothing has written yet: it reads as zero.
        Kernel = KernelLoader.Load(Memory, Config.KernelPath ?? BuiltInGuest.DisplayName, kernelImage, memoryIsZero: true);
        (ulong, ulong)? initrd = Config.InitrdPath is null ? null : KernelLoader.LoadInitrd(Memory, Kernel, Config.InitrdPath);
        int cmdlineLength = BootParams.WriteCmdline(Memory, Config.Cmdline);
        CpuSetup.WriteBootPageTablesAndGdt(Memory);
        AcpiTables.WriteTo(Memory, GuestAcpiConfig());
        MpTable.WriteTo(Memory, Config.VcpuCount, ioApicId: Config.EffectiveMaxVcpus);
        Memory.Write(MemoryLayout.ZeroPageAddress,
            BootParams.Build(Kernel, E820Map.For(Memory), MemoryLayout.CmdlineAddress, cmdlineLength, initrd, AcpiTables.RsdpAddress));
        CpuSetup.SetupBootProcessor(_vcpus[0].Handle, Kernel.EntryAddress);
    }

    private Action<string> DeviceLogger => Config.DeviceLog ?? (m => Console.Error.WriteLine($"kvmps-vmm: device: {m}"));

    /// <summary>PCI: host bridge, config ports 0xCF8-0xCFF, ECAM, and the configured devices (Devices/Pci, Devices/Virtio).</summary>
    private void BuildPci()
    {
        var log = DeviceLogger;
        var windows = PciWindowsFor(Config);
        Pci = new PciBus(MmioBus, windows, gsi => new IrqLine(this, gsi), log);
        PortBus.Register(Pci.ConfigPorts, PciBus.ConfigAddressPort, PciBus.ConfigPortCount);
        MmioBus.Register(Pci.Ecam, windows.EcamBase, windows.EcamSize);
        if (Config.Devices.Count == 0) return;
        var ioEvents = EnsureIoLoop();
        var configured = new List<ConfiguredDevice>(Config.Devices.Count);
        for (int i = 0; i < Config.Devices.Count; i++)
        {
            // A device the running VM lost before (a reboot, a restore, a migration's destination): its slot stays empty.
            if ((Config.RemovedDeviceSlots & (1u << (1 + i))) != 0) continue;
            // Each device logs through its own rate limiter: a guest must not be able to flood the VMM's log.
            var context = new DeviceContext(Memory, this, DeviceLog.Limit(log, Config.Devices[i].Type))
            {
                Deferred = Config.Deferred,
                Files = Config.KeptFiles?.GetValueOrDefault(1 + i), // a tap or image kept open across a guest reboot
            };
            if (Config.Devices[i] is PciFunctionConfig functionConfig)
            {
                // A PCI function of its own (the display): plugged as it is, no virtio transport.
                AddFunction(1 + i, functionConfig, context);
                continue;
            }
            var rom = Config.Devices[i].LoadExpansionRom();
            var device = Config.Devices[i].CreateDevice(context);
            VirtioPciTransport transport;
            try { Pci.AddDevice(1 + i, transport = VirtioPciTransport.WithRom(new VirtioPciTransport(device, Memory, _msiRouter!, ioEvents), rom)); }
            catch { device.Dispose(); throw; }
            configured.Add(new ConfiguredDevice(1 + i, Config.Devices[i], device));
            _configured = [.. configured];
        }
    }

    private void AddFunction(int slot, PciFunctionConfig config, DeviceContext context)
    {
        EnsureIoLoop(); // a passthrough function relays its interrupt eventfds on the I/O thread
        var function = CreateFunction(config, context);
        try { Pci.AddDevice(slot, function); }
        catch { function.Dispose(); throw; }
        if (function is BochsDisplay display) Display = display;
    }

    /// <summary>The machine's display (at most one, <c>--device display</c>), or null: what VNC and screenshots read.</summary>
    public BochsDisplay? Display { get; private set; }

    /// <summary>Every device that answers control requests of its own: the virtio devices, then the display.</summary>
    public IEnumerable<IDeviceControl> ControlDevices =>
        Display is { } d ? Devices.OfType<IDeviceControl>().Append(d) : Devices.OfType<IDeviceControl>();

    private static PciWindows PciWindowsFor(MachineConfig config) => new(MemoryLayout.PciMmio32Base, MemoryLayout.PciMmio32Size,
        MemoryLayout.PciMmio64Base(config.MemoryBytes, config.HotplugMemoryBytes, config.HotplugLowLimit), MemoryLayout.PciMmio64Size, MemoryLayout.PciEcamBase, MemoryLayout.PciEcamSize);

    private AcpiConfig GuestAcpiConfig() => AcpiConfigFor(Config);

    /// <summary>
    /// What the guest's ACPI tables describe for <paramref name="config"/>; it depends on the configuration alone, so
    /// <c>--acpi-tables-out</c> can write the tables without creating a VM.
    /// </summary>
    public static AcpiConfig AcpiConfigFor(MachineConfig config)
    {
        var windows = PciWindowsFor(config);
        return new(config.VcpuCount, config.EffectiveMaxVcpus)
        {
            // PCI0 host bridge (_CRS, _PRT) + ECAM reservation, then the hot-plug slots under PCI0.
            ExtraDsdtAml = [.. PciAcpi.BuildDsdtAml(windows), .. PciHotplugAcpi.BuildDsdtAml(PciHotplugAcpi.SlotObjectsFor(config.Devices))],
            ExtraTables = [PciAcpi.BuildMcfg(windows)],
            Ps2Devices = config.Devices.Any(d => d.Type == KvmPS.Contract.DisplayDeviceSpec.TypeName),
        };
    }

    /// <summary>Starts the vCPU threads; with <paramref name="paused"/> they park before their first KVM_RUN (a restore that waits for <c>resume</c>).</summary>
    public void Start(bool paused = false)
    {
        lock (_stateLock)
        {
            if (State != VmState.Created) throw new InvalidOperationException($"The VM cannot start from state {State}.");
            StartedUtc = DateTime.UtcNow;
            if (paused)
            {
                _resumed.Reset();
                _pauseRequested = true;
                if (!_partsPaused) { DeviceParts.PauseAll(); _partsPaused = true; }
            }
            else if (_partsPaused)
            {
                DeviceParts.ResumeAll(); // a restored machine: its devices start with it
                _partsPaused = false;
            }
            SetState(paused ? VmState.Paused : VmState.Running);
        }
        // A restored machine: vCPUs the guest had ejected start parked, as they were.
        foreach (var v in _vcpus)
            if ((CpuHotplug.StatusOf(v.Id) & CpuHotplugController.STATUS_PRESENT) == 0) v.MarkEjected();
        foreach (var v in _vcpus) v.Start();
    }

    /// <summary>KVM's first-change wait, paid beside the guest, not in a later snapshot's pause (EarlyKvmVm). Not by
    /// <see cref="Start"/>: it held the first vCPU back ~1 ms. The page above the 64-bit PCI window is nobody's.</summary>
    public void PayFirstSlotChangeInBackground() { if (!Memory.DirtyTracking) EarlyKvmVm.PayFirstSlotChangeInBackground(_vm!, WarmupSlot, Pci.Windows.Mmio64End); }

    /// <summary>KVM memory slot the start-up warm-up borrows (RAM uses the low numbers, the firmware image 16).</summary>
    private const uint WarmupSlot = 31;

    /// <summary>The devices as capabilities: what can stop all its activity (threads, timers) and what has a state record.</summary>
    public DeviceSet DeviceParts => _deviceSet ?? throw new InvalidOperationException("The machine's devices are not built yet.");

    /// <summary>The parts that can stop all their activity (device threads, timers), beyond the vCPUs, in pause order.</summary>
    public IEnumerable<IPausable> Pausables => DeviceParts.PausableParts();

    /// <summary>The parts with a state record, in restore order: the machine's shape, the in-kernel VM state, the vCPUs, then the devices.</summary>
    public IEnumerable<IPersistent> Persistents =>
        new IPersistent[] { new MachineShapeState(this), new KvmVmState(_vm!) }.Concat(_vcpus).Append(CpuHotplug)
            .Append(PciHotplug).Append(new HotpluggedDevicesState(this)).Append(new RemovedConfiguredDevicesState(this))
            .Concat(DeviceParts.PersistentParts());

    private uint[]? _msrIndices;
    /// <summary>The MSRs a vCPU record holds: KVM_GET_MSR_INDEX_LIST filtered to those KVM_GET_MSRS accepts.</summary>
    internal uint[] MsrIndices => _msrIndices ??= VcpuState.ReadableMsrs(_system!, _vcpus[0].Handle);
    private int _xsaveBytes;
    internal int XsaveBytes => _xsaveBytes != 0 ? _xsaveBytes : _xsaveBytes = Kvm.XsaveSize(_vm!);

    /// <summary>Every part's state record. Only while Paused (or never started): nothing may change under it.</summary>
    public List<StateRecord> SaveState()
    {
        ThrowIfNotMigratable();
        if (State is not (VmState.Paused or VmState.Created)) throw new InvalidOperationException($"The VM state can be saved only while paused (it is {State}).");
        var records = new List<StateRecord>();
        foreach (var part in Persistents)
        {
            var writer = new StateWriter();
            part.SaveState(writer);
            records.Add(new StateRecord(part.StateName, part.StateVersion, writer.ToArray()));
        }
        return records;
    }

    /// <summary>
    /// Puts saved records back into a machine built from the same configuration that has not run. Every part must find
    /// its record and every record its part; a mismatch or a record a part refuses is a <see cref="StateFormatException"/>.
    /// </summary>
    public void RestoreState(IReadOnlyList<StateRecord> records)
    {
        if (State != VmState.Created) throw new InvalidOperationException($"State can be restored only into a machine that has not started (it is {State}).");
        var byName = records.ToDictionary(r => r.Name, StringComparer.Ordinal);
        var shape = Persistents.First();
        if (byName.TryGetValue(shape.StateName, out var shapeRecord))
        {
            CreateHotAddedVcpusFor(shapeRecord);
            // The machine's shape first: a snapshot of another shape is refused as such, not as a missing vCPU record.
            shape.RestoreState(new StateReader(shapeRecord.Data, shapeRecord.Name), shapeRecord.Version);
        }
        // Hot-plugged PCI devices are created (their images and taps opened) before the parts are listed, so their
        // records find them; a snapshot from before PCI hot-plug has neither record and no such device.
        if (byName.TryGetValue(HotpluggedDevicesState.Name, out var hotplugged)) CreateHotpluggedDevicesFor(hotplugged);
        // Configured devices the VM had lost are unplugged before the parts are listed, so their records are not
        // expected; a snapshot from before live removal has no record and lost none.
        RemoveConfiguredDevicesFor(byName.GetValueOrDefault(RemovedConfiguredDevicesState.Name));
        var parts = Persistents.ToList();
        foreach (var part in parts)
            // A snapshot from before the hot-plug controller had a record was refused once a vCPU was hot-plugged: the
            // controller's boot state (the configured vCPUs present) is its state.
            if (!byName.ContainsKey(part.StateName) && part != CpuHotplug && part != PciHotplug && part is not (HotpluggedDevicesState or RemovedConfiguredDevicesState)) throw new StateFormatException(part.StateName, "the snapshot has no record for this part of the machine");
        var known = parts.Select(p => p.StateName).ToHashSet(StringComparer.Ordinal);
        foreach (var r in records)
            if (!known.Contains(r.Name)) throw new StateFormatException(r.Name, "this machine has no part with this name (built from a different configuration?)");
        foreach (var part in parts.Skip(1))
        {
            if (!byName.TryGetValue(part.StateName, out var record)) continue;
            part.RestoreState(new StateReader(record.Data, record.Name), record.Version);
        }
        // Restored transports hold their queues until resumed (notifications held at save time are not in the
        // snapshot, so resuming processes every enabled queue once); Start or Resume lets every part go.
        lock (_stateLock) _partsPaused = true;
    }

    /// <summary>
    /// A snapshot taken after vCPUs were hot-added has more vCPUs than the configuration boots: the machine record's
    /// count (its first field) says how many; those beyond the configured ones are created here, up to max_vcpus, and
    /// get their state from their records like the others. Fewer than configured, or more than the maximum, is left
    /// for the machine record to refuse.
    /// </summary>
    private void CreateHotAddedVcpusFor(StateRecord shapeRecord)
    {
        if (shapeRecord.Data.Length < 4) return;
        int saved = (int)Math.Min(System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(shapeRecord.Data), int.MaxValue);
        if (saved <= _vcpus.Length || saved > Config.EffectiveMaxVcpus) return;
        for (int id = _vcpus.Length; id < saved; id++) CreateVcpu(id, setTsc: true);
    }

    /// <summary>Replaces guest RAM with a snapshot's memory file (before any vCPU runs).</summary>
    public void RestoreMemory(Microsoft.Win32.SafeHandles.SafeFileHandle file, string path, long fileBytes, RestoreMemoryMode mode)
    {
        if (State != VmState.Created) throw new InvalidOperationException($"Memory can be restored only into a machine that has not started (it is {State}).");
        if ((ulong)fileBytes != Memory.SizeBytes)
            throw new SnapshotException(path, $"the memory file has {fileBytes} bytes but the machine has {Memory.SizeBytes} bytes of RAM");
        if (mode == RestoreMemoryMode.Private) GuestMemoryFile.MapPrivate(Memory, file, path);
        else GuestMemoryFile.Copy(Memory, file, path);
    }

    /// <summary>Forced stop: vCPUs leave KVM_RUN at once.</summary>
    public void Stop(string reason = "stopped by request") => Finish(new VmExit(VmExitKind.Stopped, reason));

    private EventFdHandle? _exitSignal;

    /// <summary>
    /// Has <paramref name="signal"/> signalled once the VM has ended (at once if it has), from the thread that ends it:
    /// a thread can then wait for the end in read(2) running no managed wait code (Vmm/StartupPages). Exactly one
    /// signal; the caller keeps the eventfd open until it has read it.
    /// </summary>
    public void SignalOnExit(EventFdHandle signal)
    {
        lock (_stateLock)
        {
            if (!_exit.Task.IsCompleted) { _exitSignal = signal; return; }
        }
        signal.Signal();
    }

    /// <summary>Records how the VM ended (the first cause wins) and stops every vCPU.</summary>
    internal void Finish(VmExit exit)
    {
        lock (_stateLock)
        {
            if (_exit.Task.IsCompleted) return;
            _stopRequested = true;
            _pauseRequested = false;
            _resumed.Set();
            SetState(exit.Kind switch { VmExitKind.Crashed => VmState.Crashed, VmExitKind.Migrated => VmState.Migrated, _ => VmState.Stopped });
        }
        foreach (var v in _vcpus) { v.Kick(); v.WakeEjected(); }
        _exit.TrySetResult(exit);
        // After the result: SignalOnExit signals itself once the task is complete, so the one signal is sent either here or there.
        Interlocked.Exchange(ref _exitSignal, null)?.Signal();
    }

    public void RequestPowerOff(string reason) => Finish(new VmExit(VmExitKind.PowerOff, reason));
    public void RequestReset(string reason) => Finish(new VmExit(VmExitKind.Reset, reason));
    public void RequestDebugExit(int guestValue) => Finish(new VmExit(VmExitKind.DebugExit, $"guest wrote {guestValue} to the debug-exit port", guestValue));

    /// <summary>Waits for every vCPU thread to leave its loop.</summary>
    public bool JoinVcpus(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        foreach (var v in _vcpus)
        {
            var left = deadline - DateTime.UtcNow;
            if (left < TimeSpan.Zero || !v.Join(left)) return false;
        }
        return true;
    }

    private void SetState(VmState state)
    {
        State = state;
        StateChanged?.Invoke(state);
    }

    internal void SetIrqLine(uint irq, bool level)
    {
        if (_vm is not { IsClosed: false } vm) return;
        bool added = false;
        try
        {
            vm.DangerousAddRef(ref added); // the fd cannot be closed (and reused) under the ioctl
            Kvm.IrqLine(vm, irq, level);
        }
        catch (ObjectDisposedException) { } // the VM is being torn down: the line no longer matters
        catch (NativeCallException) when (_stopRequested) { }
        finally { if (added) vm.DangerousRelease(); }
    }

    /// <summary>An ISA interrupt line through KVM_IRQ_LINE (routed to both the PIC and the IOAPIC).</summary>
    private sealed class IrqLine(VirtualMachine machine, uint irq) : IInterruptLine
    {
        public void Trigger() { machine.SetIrqLine(irq, true); machine.SetIrqLine(irq, false); }
        public void SetLevel(bool asserted) => machine.SetIrqLine(irq, asserted);
    }

    public void Dispose()
    {
        if (!_exit.Task.IsCompleted) Finish(new VmExit(VmExitKind.Stopped, "VM disposed"));
        // A vCPU thread that never left KVM_RUN still uses the mappings: leak them rather than unmap under it.
        if (!JoinVcpus(TimeSpan.FromSeconds(5))) return;
        foreach (var v in _vcpus) v.Dispose();
        _vcpus = [];
        _dirtyRings?.Dispose();
        Pci?.Dispose();       // PCI devices: ioeventfds and irqfds go before the VM fd
        _ioLoop?.Dispose();
        _msiRouter?.Dispose();
        _vm?.Dispose();
        _system?.Dispose();
        _firmware?.Dispose();
        Memory?.Dispose();
        _resumed.Dispose();
    }
}
