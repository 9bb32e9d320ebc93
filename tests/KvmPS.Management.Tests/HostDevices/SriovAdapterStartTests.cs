using KvmPS.Management.Definitions;
using KvmPS.Management.HostDevices;
using KvmPS.Management.Tests.TestSupport;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Tests.HostDevices;

/// <summary>
/// A VM whose network adapter is an SR-IOV VF, started against the fake sysfs: the VF's MAC and VLAN go to the PF over
/// netlink (recorded, not sent) before the VF is bound to vfio-pci, and the VMM gets the VF as a kernel-VFIO device.
/// </summary>
public sealed class SriovAdapterStartTests : IDisposable
{
    private const string Pf = "0000:03:00.0", PfInterface = "enp3s0f0";
    private readonly FakeSysfs _sysfs = new();
    private readonly TempDirectory _vm = new();
    private readonly RecordingNetlink _netlink;
    private readonly List<string> _events = new();

    public SriovAdapterStartTests()
    {
        _sysfs.AddDriver("vfio-pci");
        _sysfs.AddDevice(Pf, "ixgbe", iommuGroup: 7, totalVfs: 8);
        _sysfs.AddNetworkInterface(Pf, PfInterface, "up");
        new HostSriov(_sysfs.Host, _sysfs.Kernel).SetVfCount(PciAddress.Parse(Pf), 4);
        _sysfs.Kernel.Writes.Clear();
        _netlink = new RecordingNetlink(_events);
    }

    public void Dispose()
    {
        _sysfs.Dispose();
        _vm.Dispose();
    }

    /// <summary>
    /// Records each request (as the bytes VfNetlink would send) and, through <see cref="LoggingWriter"/>, when it came;
    /// keeps each VF's MAC and VLAN as a PF would (a VF never set has an all-zero MAC and no VLAN).
    /// </summary>
    private sealed class RecordingNetlink(List<string> events) : IVfNetlink
    {
        public List<(string Interface, int Vf, byte[] Mac, int? Vlan, byte[] Message)> Calls { get; } = new();
        public Dictionary<(string, int), VfSettings> State { get; } = new();
        public Exception? Fail { get; set; }

        public void SetVf(string physicalInterface, int vf, ReadOnlySpan<byte> mac, int? vlan)
        {
            events.Add($"netlink {physicalInterface} vf {vf}");
            if (Fail is { } e) throw e;
            Calls.Add((physicalInterface, vf, mac.ToArray(), vlan, VfNetlink.BuildSetVf(physicalInterface, vf, mac, vlan, 0, 1)));
            State[(physicalInterface, vf)] = new VfSettings(mac.ToArray(), vlan ?? 0);
        }

        public VfSettings GetVf(string physicalInterface, int vf) =>
            State.TryGetValue((physicalInterface, vf), out var s) ? s : new VfSettings(new byte[6], 0);
    }

    private sealed class LoggingWriter(ISysfsWriter inner, List<string> events) : ISysfsWriter
    {
        public void Write(string path, string value)
        {
            events.Add($"write {Path.GetFileName(path)}");
            inner.Write(path, value);
        }
    }

    private PciPassthroughHost Host => new(_sysfs.Host, new LoggingWriter(_sysfs.Kernel, _events), _netlink);

    private string Vf(int index) => new HostSriov(_sysfs.Host, _sysfs.Kernel).VirtualFunctions(PciAddress.Parse(Pf))[index].Address.ToString();

    private static readonly MacAddress Mac = MacAddress.Parse("52:54:00:12:34:56");

    private static VmDefinition WithVfAdapter(string vf, int? vlan) => TestDefinitions.Minimal("vm1") with
    {
        NetworkAdapters = new ValueList<NetworkAdapterDefinition>([new(null, null, Mac, SriovVf: PciAddress.Parse(vf), VlanId: vlan)]),
    };

    [Fact]
    public void TheMacAndVlanAreSetOnThePfBeforeTheVfIsBoundAndTheVfIsGivenBackAtStop()
    {
        var vf = Vf(2);

        var records = Host.PrepareForStart(WithVfAdapter(vf, 100), _vm.Path, []);

        var call = Assert.Single(_netlink.Calls);
        Assert.Equal((PfInterface, 2, 100), (call.Interface, call.Vf, call.Vlan));
        Assert.Equal(Mac.GetOctets(), call.Mac);
        // The request that would go to the kernel: ip link set enp3s0f0 vf 2 mac 52:54:00:12:34:56 vlan 100.
        Assert.Equal(VfNetlink.BuildSetVf(PfInterface, 2, Mac.GetOctets(), 100, 0, 1), call.Message);
        Assert.Equal("netlink enp3s0f0 vf 2", _events[0]);
        Assert.Contains("write driver_override", _events.Skip(1));
        Assert.Equal([new PciBindingRecord(PciAddress.Parse(vf), "ixgbevf")], records);
        Assert.Equal("vfio-pci", _sysfs.DriverOf(vf));

        Host.ReleaseAfterStop(_vm.Path);
        Assert.Equal("ixgbevf", _sysfs.DriverOf(vf));
    }

    [Fact]
    public void TheVfsPreviousMacAndVlanAreRecordedAtStartAndPutBackAtStop()
    {
        var vf = Vf(2);
        var before = new VfSettings(VfNetlink.ParseMac("02:11:22:33:44:55"), 42);
        _netlink.State[(PfInterface, 2)] = before;

        Host.PrepareForStart(WithVfAdapter(vf, 100), _vm.Path, []);
        Assert.Equal("enp3s0f0 2 02:11:22:33:44:55 42", File.ReadAllText(PciPassthroughHost.VfStatePath(_vm.Path)).Trim());
        Assert.Equal(Mac.GetOctets(), _netlink.State[(PfInterface, 2)].Mac);

        Host.ReleaseAfterStop(_vm.Path);
        var restored = _netlink.Calls[^1];
        Assert.Equal((PfInterface, 2, 42), (restored.Interface, restored.Vf, restored.Vlan));
        Assert.Equal(before.Mac, restored.Mac);
        Assert.Equal(before.ToString(), _netlink.State[(PfInterface, 2)].ToString());
        Assert.False(File.Exists(PciPassthroughHost.VfStatePath(_vm.Path)));
        // After the VF is back with its host driver, as libvirt does.
        Assert.True(_events.FindLastIndex(e => e.StartsWith("write ")) < _events.LastIndexOf("netlink enp3s0f0 vf 2"));
        int calls = _netlink.Calls.Count;
        Host.ReleaseAfterStop(_vm.Path);                            // idempotent: nothing left to put back
        Assert.Equal(calls, _netlink.Calls.Count);
    }

    [Fact]
    public void ARefusedRestoreIsReportedAndRetriedByTheNextRelease()
    {
        var vf = Vf(1);
        Host.PrepareForStart(WithVfAdapter(vf, 7), _vm.Path, []);
        _netlink.Fail = new VfNetlinkException(PfInterface, 1, "the kernel refused it: No such device (errno 19).");

        var e = Assert.Throws<VfNetlinkException>(() => Host.ReleaseAfterStop(_vm.Path));
        Assert.Contains("VF 1 of enp3s0f0", e.Message);
        Assert.Equal("ixgbevf", _sysfs.DriverOf(vf));                // the binding is given back all the same
        Assert.True(File.Exists(PciPassthroughHost.VfStatePath(_vm.Path)));

        _netlink.Fail = null;
        Host.ReleaseAfterStop(_vm.Path);
        Assert.Equal(new byte[6], _netlink.State[(PfInterface, 1)].Mac); // back to the unset MAC it had
        Assert.Equal(0, _netlink.State[(PfInterface, 1)].Vlan);
        Assert.False(File.Exists(PciPassthroughHost.VfStatePath(_vm.Path)));
    }

    [Fact]
    public void AFailedBindPutsTheVfSettingsBack()
    {
        var vf = Vf(3);
        _netlink.State[(PfInterface, 3)] = new VfSettings(VfNetlink.ParseMac("02:00:00:00:00:03"), 0);
        _sysfs.Kernel.FailWhen = (path, value) => path.EndsWith("driver_override", StringComparison.Ordinal) && value == "vfio-pci";

        Assert.Throws<PciBindingException>(() => Host.PrepareForStart(WithVfAdapter(vf, 9), _vm.Path, []));
        Assert.Equal("02:00:00:00:00:03 vlan 0", _netlink.State[(PfInterface, 3)].ToString());
        Assert.False(File.Exists(PciPassthroughHost.VfStatePath(_vm.Path)));
    }

    [Fact]
    public void ParseVfFindsTheVfInALinkMessage()
    {
        // An RTM_NEWLINK message with IFLA_VFINFO_LIST holding VF 0 and VF 1 (nested flag set, as the kernel sends it).
        var m = new List<byte>(new byte[32]);
        void Attr(ushort type, byte[] value) { var h = new byte[4]; BitConverter.TryWriteBytes(h.AsSpan(), (ushort)(4 + value.Length)); BitConverter.TryWriteBytes(h.AsSpan(2), type); m.AddRange(h); m.AddRange(value); while (m.Count % 4 != 0) m.Add(0); }
        byte[] Info(int vf, string mac, int vlan)
        {
            var saved = m.ToArray(); m.Clear();
            var macField = new byte[36]; BitConverter.TryWriteBytes(macField.AsSpan(), (uint)vf); VfNetlink.ParseMac(mac).CopyTo(macField, 4);
            var vlanField = new byte[12]; BitConverter.TryWriteBytes(vlanField.AsSpan(), (uint)vf); BitConverter.TryWriteBytes(vlanField.AsSpan(4), (uint)vlan);
            Attr(1, macField); Attr(2, vlanField);
            var body = m.ToArray(); m.Clear(); m.AddRange(saved);
            var info = new byte[4 + body.Length]; BitConverter.TryWriteBytes(info.AsSpan(), (ushort)info.Length); BitConverter.TryWriteBytes(info.AsSpan(2), (ushort)(1 | 0x8000)); body.CopyTo(info, 4);
            return info;
        }
        Attr(3, "enp3s0f0\0"u8.ToArray());
        Attr(22 | 0x8000, [.. Info(0, "02:00:00:00:00:0a", 0), .. Info(1, "02:00:00:00:00:0b", 300)]);
        var bytes = m.ToArray();
        BitConverter.TryWriteBytes(bytes.AsSpan(), (uint)bytes.Length);

        Assert.Equal("02:00:00:00:00:0b vlan 300", VfNetlink.ParseVf(bytes, 1)!.ToString());
        Assert.Equal("02:00:00:00:00:0a vlan 0", VfNetlink.ParseVf(bytes, 0)!.ToString());
        Assert.Null(VfNetlink.ParseVf(bytes, 2));
        Assert.Null(VfNetlink.ParseVf(bytes.AsSpan(0, 40), 1));       // cut short: the walk stops, no crash
    }

    [Fact]
    public void AnAdapterWithoutVlanClearsTheOneAnEarlierVmLeftOnTheVf()
    {
        Host.PrepareForStart(WithVfAdapter(Vf(0), null), _vm.Path, []);

        Assert.Equal(0, Assert.Single(_netlink.Calls).Vlan);
    }

    [Fact]
    public void ARefusedNetlinkRequestRebindsNothing()
    {
        var vf = Vf(1);
        _netlink.Fail = new VfNetlinkException(PfInterface, 1, "the kernel refused it: Operation not supported (errno 95).");

        var e = Assert.Throws<VfNetlinkException>(() => Host.PrepareForStart(WithVfAdapter(vf, 7), _vm.Path, []));

        Assert.Contains("VF 1 of enp3s0f0", e.Message);
        Assert.Empty(_sysfs.Kernel.Writes);
        Assert.Equal("ixgbevf", _sysfs.DriverOf(vf));
        Assert.False(File.Exists(PciPassthroughHost.StatePath(_vm.Path)));
    }

    [Fact]
    public void AnAddressThatIsNoVfIsRefusedBeforeAnythingHappens()
    {
        _sysfs.AddDevice("0000:05:00.0", "e1000e", iommuGroup: 9);

        var e = Assert.Throws<PciPassthroughException>(() => Host.PrepareForStart(WithVfAdapter("0000:05:00.0", null), _vm.Path, []));

        Assert.Equal(PciAddress.Parse("0000:05:00.0"), e.Address);
        Assert.Contains("not an SR-IOV virtual function", e.Message);
        Assert.Empty(_netlink.Calls);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void APfWithoutNetworkInterfaceIsRefusedNamingIt()
    {
        Directory.Delete(Path.Combine(_sysfs.DeviceDirectory(Pf), "net"), recursive: true);

        var e = Assert.Throws<PciPassthroughException>(() => Host.PrepareForStart(WithVfAdapter(Vf(0), null), _vm.Path, []));

        Assert.Contains($"its physical function {Pf} has no network interface", e.Message);
        Assert.Empty(_netlink.Calls);
        Assert.Empty(_sysfs.Kernel.Writes);
    }

    [Fact]
    public void AVfHeldByAnotherVmIsRefused()
    {
        using var other = new TempDirectory();
        Host.PrepareForStart(WithVfAdapter(Vf(3), null) with { Name = "vm0" }, other.Path, []);
        _netlink.Calls.Clear();

        var e = Assert.Throws<PciPassthroughException>(() =>
            Host.PrepareForStart(WithVfAdapter(Vf(3), null), _vm.Path, PciPassthroughHost.ReadAssignments([("vm0", other.Path)])));

        Assert.Contains("already assigned to VM 'vm0'", e.Message);
        Assert.Empty(_netlink.Calls);
    }

    [Fact]
    public void CheckVirtualFunctionAcceptsAVfAndRefusesAPhysicalFunction()
    {
        var readiness = PciPassthroughCheck.CheckVirtualFunction(_sysfs.Host, PciAddress.Parse(Vf(0)));
        Assert.Contains(readiness.Warnings, w => w.Contains("bound to ixgbevf, not vfio-pci"));

        var e = Assert.Throws<PciPassthroughException>(() => PciPassthroughCheck.CheckVirtualFunction(_sysfs.Host, PciAddress.Parse(Pf)));
        Assert.Contains("not an SR-IOV virtual function", e.Message);
    }

    [Fact]
    public void TheVmmGetsTheVfAsAKernelVfioDeviceNotAVirtioNic()
    {
        var vf = Vf(1);
        var definition = WithVfAdapter(vf, 100) with
        {
            NetworkAdapters = new ValueList<NetworkAdapterDefinition>([
                new("tap0", null, MacAddress.Parse("52:54:00:00:00:01")),
                new(null, null, Mac, SriovVf: PciAddress.Parse(vf), VlanId: 100),
            ]),
            PciPassthrough = new ValueList<PciAddress>([PciAddress.Parse("0000:09:00.0")]),
        };

        var config = VmmConfigBuilder.BuildConfiguration(definition, "/run/vm1.sock", "/run/serial.log");

        Assert.Single(config.Devices!.OfType<KvmPS.Contract.NetDeviceSpec>());
        Assert.Equal(["0000:09:00.0", vf], config.Devices.OfType<KvmPS.Contract.VfioDeviceSpec>().Select(d => d.Host));
        Assert.Throws<InvalidOperationException>(() => VmmConfigBuilder.NetworkAdapterDevice(definition, 1));
    }
}
