using KvmPS.Acpi;
using KvmPS.Devices;
using KvmPS.Devices.Config;
using KvmPS.Devices.Legacy;
using KvmPS.Devices.Pci;
using KvmPS.Devices.Virtio;
using KvmPS.Interop;
using KvmPS.Vm.Boot;
using KvmPS.Vm.Firmware;
using KvmPS.Vmm;

namespace KvmPS.Vm;

/// <summary>
/// One KVM virtual machine: VM fd, guest memory, in-kernel irqchip and PIT, the legacy devices, and one thread per
/// vCPU. Built and booted by <see cref="Create"/>; everything it created is released by <see cref="Dispose"/>, also
/// when creation fails half-way.
/// </summary>
public sealed class VirtualMachine : IDisposable, IMachineControl
{
    private readonly List<Vcpu> _vcpus = new();
    private readonly object _stateLock = new();
    private readonly ManualResetEventSlim _resumed = new(true);
    private readonly TaskCompletionSource<VmExit> _exit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopRequested, _pauseRequested;
    private int _parked;
    private KvmSystemHandle? _system;
    private KvmVmHandle? _vm;
    private IoEventLoop? _ioLoop;       // PCI: device I/O thread (ioeventfd notifications)
    private KvmMsiRouter? _msiRouter;   // PCI: MSI-X vectors as KVM GSI routes + irqfds
    private FirmwareImage? _firmware;   // firmware boot: the image mapped below 4 GiB

    public MachineConfig Config { get; }
    public GuestMemory Memory { get; private set; } = null!;
    public PortIoBus PortBus { get; } = new();
    public MmioBus MmioBus { get; } = new();
    public Serial16550 Serial { get; private set; } = null!;
    public AcpiPm Pm { get; private set; } = null!;
    public PostCode PostCode { get; } = new();
    /// <summary>PCI bus 0 (host bridge at 00:00.0, devices in slots 1-31).</summary>
    public PciBus Pci { get; private set; } = null!;
    private readonly List<IVirtioDevice> _devices = new();
    /// <summary>The configured devices, in slot order.</summary>
    public IReadOnlyList<IVirtioDevice> Devices => _devices;
    public IReadOnlyList<Vcpu> Vcpus => _vcpus;
    public VmState State { get; private set; } = VmState.Created;
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

    /// <summary>Creates the VM and loads the guest; the vCPUs do not run until <see cref="Start"/>.</summary>
    public static VirtualMachine Create(MachineConfig config, ByteSink serialOutput)
    {
        config.Validate();
        var machine = new VirtualMachine(config);
        try
        {
            machine.Build(serialOutput);
            return machine;
        }
        catch
        {
            machine.Dispose();
            throw;
        }
    }

    private void Build(ByteSink serialOutput)
    {
        // Read the images first: a bad path fails before any KVM resource exists.
        _firmware = Config.FirmwarePath is null ? null : FirmwareImage.Load(Config.FirmwarePath);
        byte[] kernelImage = _firmware is not null ? [] : Config.KernelPath is null ? BuiltInGuest.Image() : ReadImage(Config.KernelPath, "kernel");
        if (Config.InitrdPath is not null && !File.Exists(Config.InitrdPath))
            throw new BootImageException(Config.InitrdPath, "the initrd does not exist.");

        _system = Kvm.OpenSystem(Config.KvmDevicePath);
        int maxVcpus = Math.Max(Kvm.CheckExtension(_system, KvmConstants.KVM_CAP_MAX_VCPUS), Kvm.CheckExtension(_system, KvmConstants.KVM_CAP_NR_VCPUS));
        if (Config.EffectiveMaxVcpus > maxVcpus && maxVcpus > 0)
            throw new ArgumentOutOfRangeException(nameof(Config.MaxVcpus), $"{Config.EffectiveMaxVcpus} vCPUs requested but this host's KVM allows {maxVcpus}.");
        _vm = Kvm.CreateVm(_system);
        Kvm.SetTssAddr(_vm, _firmware?.KvmTssAddress ?? MemoryLayout.KvmTssAddress);
        Kvm.SetIdentityMapAddr(_vm, _firmware?.KvmIdentityMapAddress ?? MemoryLayout.KvmIdentityMapAddress);
        Kvm.CreateIrqchip(_vm);
        Kvm.CreatePit2(_vm, KvmConstants.KVM_PIT_SPEAKER_DUMMY);
        // KVM's default routing leaves the PIT on IOAPIC pin 0; our tables put it on pin 2. Commit before any vCPU runs.
        _msiRouter = new KvmMsiRouter(_vm, DeviceLogger);
        _msiRouter.CommitIrqchipRoutes();

        Memory = GuestMemory.Create(Config.MemoryBytes, Config.Memory);
        Memory.RegisterWith(_vm);

        Serial = new Serial16550(new IrqLine(this, Serial16550.Com1Irq), serialOutput);
        Pm = new AcpiPm(this, new IrqLine(this, MemoryLayout.SciIrq));
        PortBus.Register(Serial, Serial16550.Com1Port, 8);
        PortBus.Register(new I8042(this), I8042.DataPort, 5);
        PortBus.Register(new CmosRtc(Config.MemoryBytes), CmosRtc.IndexPort, 2);
        PortBus.Register(new DebugExit(this), DebugExit.Port, 4);
        PortBus.Register(PostCode, PostCode.Port, 1);
        PortBus.Register(Pm, AcpiPm.BasePort, AcpiPm.Length);
        BuildPci();

        if (_firmware is null) LoadGuest(kernelImage);
        else FwCfg = FirmwareLoader.Install(_firmware, _vm, Memory, PortBus, MmioBus, Pci, Config, _devices, GuestAcpiConfig());

        int runSize = Kvm.GetVcpuMmapSize(_system);
        var cpuid = Kvm.GetSupportedCpuid(_system);
        VcpuKick.EnsureHandlerInstalled();
        for (int id = 0; id < Config.VcpuCount; id++)
        {
            var handle = Kvm.CreateVcpu(_vm, (uint)id);
            Vcpu vcpu;
            try { vcpu = new Vcpu(this, handle, id, runSize); }
            catch { handle.Dispose(); throw; }
            _vcpus.Add(vcpu);
            Kvm.SetCpuid2(handle, CpuSetup.CpuidFor(cpuid, (uint)id, Config.EffectiveMaxVcpus));
            CpuSetup.SetupMsrs(handle, cpuid);
            if (id == 0 && _firmware is null) CpuSetup.SetupBootProcessor(handle, Kernel!.EntryAddress); // firmware: KVM's reset state
            CpuSetup.SetupLapic(handle);
        }
    }

    private Action<string> DeviceLogger => Config.DeviceLog ?? (m => Console.Error.WriteLine($"kvmps-vmm: device: {m}"));

    /// <summary>PCI: host bridge, config ports 0xCF8-0xCFF, ECAM, and the configured devices (Devices/Pci, Devices/Virtio).</summary>
    private void BuildPci()
    {
        var log = DeviceLogger;
        var windows = new PciWindows(MemoryLayout.PciMmio32Base, MemoryLayout.PciMmio32Size,
            MemoryLayout.PciMmio64Base(Config.MemoryBytes), MemoryLayout.PciMmio64Size, MemoryLayout.PciEcamBase, MemoryLayout.PciEcamSize);
        Pci = new PciBus(MmioBus, windows, gsi => new IrqLine(this, gsi), log);
        PortBus.Register(Pci.ConfigPorts, PciBus.ConfigAddressPort, PciBus.ConfigPortCount);
        MmioBus.Register(Pci.Ecam, windows.EcamBase, windows.EcamSize);
        if (Config.Devices.Count == 0) return;
        _ioLoop = new IoEventLoop(log);
        var ioEvents = new KvmIoEventRegistrar(_vm!, _ioLoop, log);
        for (int i = 0; i < Config.Devices.Count; i++)
        {
            // Each device logs through its own rate limiter: a guest must not be able to flood the VMM's log.
            var context = new DeviceContext(Memory, this, DeviceLog.Limit(log, Config.Devices[i].Type));
            var device = Config.Devices[i].CreateDevice(context);
            try { Pci.AddDevice(1 + i, new VirtioPciTransport(device, Memory, _msiRouter!, ioEvents)); }
            catch { device.Dispose(); throw; }
            _devices.Add(device);
        }
    }

    private static byte[] ReadImage(string path, string what)
    {
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BootImageException(path, $"cannot read the {what} image: {IoErrorText.Describe(e)}", e);
        }
    }

    private void LoadGuest(byte[] kernelImage)
    {
        Kernel = KernelLoader.Load(Memory, Config.KernelPath ?? BuiltInGuest.DisplayName, kernelImage);
        (ulong, ulong)? initrd = Config.InitrdPath is null ? null : KernelLoader.LoadInitrd(Memory, Kernel, Config.InitrdPath);
        int cmdlineLength = BootParams.WriteCmdline(Memory, Config.Cmdline);
        CpuSetup.WriteBootPageTablesAndGdt(Memory);
        AcpiTables.WriteTo(Memory, GuestAcpiConfig());
        MpTable.WriteTo(Memory, Config.VcpuCount, ioApicId: Config.EffectiveMaxVcpus);
        Memory.Write(MemoryLayout.ZeroPageAddress,
            BootParams.Build(Kernel, E820Map.For(Memory), MemoryLayout.CmdlineAddress, cmdlineLength, initrd, AcpiTables.RsdpAddress));
    }

    private AcpiConfig GuestAcpiConfig() => new(Config.VcpuCount, Config.EffectiveMaxVcpus)
    {
        ExtraDsdtAml = PciAcpi.BuildDsdtAml(Pci.Windows), // PCI0 host bridge (_CRS, _PRT) + ECAM reservation
        ExtraTables = [PciAcpi.BuildMcfg(Pci.Windows)],
    };

    public void Start()
    {
        lock (_stateLock)
        {
            if (State != VmState.Created) throw new InvalidOperationException($"The VM cannot start from state {State}.");
            StartedUtc = DateTime.UtcNow;
            SetState(VmState.Running);
        }
        foreach (var v in _vcpus) v.Start();
    }

    /// <summary>Stops every vCPU at its next exit and waits until all are parked.</summary>
    public bool Pause(TimeSpan timeout)
    {
        lock (_stateLock)
        {
            if (State == VmState.Paused) return true;
            if (State != VmState.Running) throw new InvalidOperationException($"The VM cannot be paused from state {State}.");
            _resumed.Reset();
            _pauseRequested = true;
        }
        foreach (var v in _vcpus) v.Kick();
        var deadline = DateTime.UtcNow + timeout;
        while (Volatile.Read(ref _parked) < _vcpus.Count(v => v.State != VcpuRunState.Exited))
        {
            if (DateTime.UtcNow > deadline || _exit.Task.IsCompleted)
            {
                // Not every vCPU stopped: undo the request so the VM keeps running as its state says.
                lock (_stateLock)
                {
                    _pauseRequested = false;
                    _resumed.Set();
                }
                return false;
            }
            foreach (var v in _vcpus) if (v.State == VcpuRunState.Running) v.Kick();
            Thread.Sleep(1);
        }
        lock (_stateLock) if (State == VmState.Running) SetState(VmState.Paused);
        return true;
    }

    public void Resume()
    {
        lock (_stateLock)
        {
            if (State == VmState.Running) return;
            if (State != VmState.Paused) throw new InvalidOperationException($"The VM cannot be resumed from state {State}.");
            _pauseRequested = false;
            _resumed.Set();
            SetState(VmState.Running);
        }
    }

    internal void ParkWhilePaused()
    {
        Interlocked.Increment(ref _parked);
        try { _resumed.Wait(); }
        finally { Interlocked.Decrement(ref _parked); }
    }

    /// <summary>Forced stop: vCPUs leave KVM_RUN at once.</summary>
    public void Stop(string reason = "stopped by request") => Finish(new VmExit(VmExitKind.Stopped, reason));

    /// <summary>Records how the VM ended (the first cause wins) and stops every vCPU.</summary>
    internal void Finish(VmExit exit)
    {
        lock (_stateLock)
        {
            if (_exit.Task.IsCompleted) return;
            _stopRequested = true;
            _pauseRequested = false;
            _resumed.Set();
            SetState(exit.Kind == VmExitKind.Crashed ? VmState.Crashed : VmState.Stopped);
        }
        foreach (var v in _vcpus) v.Kick();
        _exit.TrySetResult(exit);
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
        _vcpus.Clear();
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
