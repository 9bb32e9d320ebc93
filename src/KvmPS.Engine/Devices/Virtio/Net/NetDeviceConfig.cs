using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using KvmPS.Devices.Config;
using KvmPS.Devices.Virtio;

namespace KvmPS.Devices.Virtio.Net;

/// <summary>
/// virtio-net on a Linux tap. <c>tap</c>: an existing tap, or one to create (needs CAP_NET_ADMIN; it goes away
/// with the VM); <c>bridge</c>: attach the tap to this existing bridge; <c>mac</c>: the guest's address (default
/// 52:54:00 + 3 bytes derived from the tap name); <c>mtu</c>: offered to the driver (VIRTIO_NET_F_MTU) and set on
/// the tap; <c>rom_path</c>: a PCI expansion ROM for the function (e.g. iPXE's pxe-virtio.rom, which SeaBIOS runs
/// to boot from the network).
/// </summary>
public sealed record NetDeviceConfig : DeviceConfig
{
    public const int IfNameMax = 15; // IFNAMSIZ - 1
    public override string Type => "net";
    public required string Tap { get; init; }
    public string? Bridge { get; init; }
    public required byte[] Mac { get; init; }
    public int? Mtu { get; init; }
    /// <summary>The expansion ROM image offered behind the ROM BAR, or null for none.</summary>
    public string? RomPath { get; init; }

    public static NetDeviceConfig Parse(DeviceOptions options)
    {
        string tap = options.RequiredString("tap");
        string? bridge = options.String("bridge");
        string? mac = options.String("mac");
        long mtu = options.Int("mtu", 0, 68, 65535);
        string? romPath = options.String("rom_path");
        options.EnsureAllUsed();
        if (romPath is { Length: 0 }) throw new DeviceConfigException($"{options.Source}: key 'rom_path': the path is empty.");
        CheckInterfaceName(options, "tap", tap);
        if (bridge is not null) CheckInterfaceName(options, "bridge", bridge);
        byte[] address;
        if (mac is null) address = DefaultMac(tap);
        else if (!TryParseMac(mac, out address, out string why)) throw new DeviceConfigException($"{options.Source}: key 'mac': '{mac}' is not a usable MAC address: {why}.");
        return new NetDeviceConfig { Tap = tap, Bridge = bridge, Mac = address, Mtu = mtu == 0 ? null : (int)mtu, RomPath = romPath };
    }

    /// <summary>Linux's dev_valid_name: 1-15 bytes, not "." or "..", no '/', ':' or white space.</summary>
    private static void CheckInterfaceName(DeviceOptions options, string key, string name)
    {
        string? why = null;
        if (name.Length == 0) why = "it is empty";
        else if (Encoding.UTF8.GetByteCount(name) > IfNameMax) why = $"it is longer than {IfNameMax} bytes (IFNAMSIZ is 16 with the terminating NUL)";
        else if (name is "." or "..") why = "'.' and '..' are not interface names";
        else if (name.Any(c => c is '/' or ':' || char.IsWhiteSpace(c) || c > 0x7e)) why = "interface names may not contain '/', ':', white space or non-ASCII characters";
        if (why is not null) throw new DeviceConfigException($"{options.Source}: key '{key}': '{name}' is not a valid interface name: {why}.");
    }

    /// <summary>Parses aa:bb:cc:dd:ee:ff (or with '-'); must be unicast and not all zero.</summary>
    public static bool TryParseMac(string text, out byte[] mac, out string why)
    {
        mac = new byte[6];
        var parts = text.Split(text.Contains('-') ? '-' : ':');
        if (parts.Length != 6 || parts.Any(p => p.Length != 2))
        {
            why = "expected six two-digit hex bytes like 52:54:00:12:34:56";
            return false;
        }
        for (int i = 0; i < 6; i++)
            if (!byte.TryParse(parts[i], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out mac[i]))
            {
                why = $"'{parts[i]}' is not a hex byte";
                return false;
            }
        if ((mac[0] & 1) != 0) { why = "it is a multicast address (the low bit of the first byte is set)"; return false; }
        if (mac.All(b => b == 0)) { why = "it is all zero"; return false; }
        why = "";
        return true;
    }

    /// <summary>52:54:00:xx:xx:xx (locally administered, unicast) with xx from a hash of the tap name: stable across runs.</summary>
    public static byte[] DefaultMac(string tap)
    {
        byte[] h = SHA256.HashData(Encoding.UTF8.GetBytes("kvmps-net:" + tap));
        return [0x52, 0x54, 0x00, h[0], h[1], h[2]];
    }

    public static string FormatMac(ReadOnlySpan<byte> mac) => string.Join(":", mac.ToArray().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)));

    public override Pci.PciExpansionRom? LoadExpansionRom()
    {
        if (RomPath is null) return null;
        try { return Pci.PciExpansionRom.Load(RomPath); }
        catch (Pci.ExpansionRomException e) { throw new DeviceConfigException($"net device: key 'rom_path': {e.Message}"); }
    }

    public override IVirtioDevice CreateDevice(DeviceContext context)
    {
        // A live upgrade's destination: the running VMM holds the tap (TUNSETIFF would answer EBUSY) and hands it over.
        if (context.Deferred.HasFlag(HandedOverResources.Taps)) return new VirtioNet(new PendingNetBackend(Tap), Mac, Mtu is int pm ? (ushort)pm : null);
        TapDevice tap;
        try
        {
            // Passed (management's device.add, or kept across a reboot): opened and set up by whoever had the rights.
            if (context.Files is { Count: > 0 } passed)
            {
                var files = passed.TakeAll();
                if (files.Count != 1)
                {
                    foreach (var f in files) f.Dispose();
                    throw new TapSetupException($"tap '{Tap}': {files.Count} files were passed for it; a net device takes one (the tap).");
                }
                tap = TapDevice.FromPassed(files[0], Tap, Bridge);
            }
            else tap = TapDevice.Open(Tap, Bridge, Mtu);
        }
        catch (TapSetupException e) { throw new DeviceConfigException($"net device: {e.Message}"); }
        tap.Log = context.Log;
        context.Log($"virtio-net: tap '{tap.Name}'{(tap.Created ? " (created)" : "")}{(Bridge is null ? "" : $" on bridge '{Bridge}'")}, mac {FormatMac(Mac)}");
        return new VirtioNet(tap, Mac, Mtu is int m ? (ushort)m : null);
    }

    public override void Describe(Utf8JsonWriter w)
    {
        w.WriteString("tap", Tap);
        if (Bridge is not null) w.WriteString("bridge", Bridge);
        w.WriteString("mac", FormatMac(Mac));
        if (Mtu is int m) w.WriteNumber("mtu", m);
        if (RomPath is not null) w.WriteString("rom_path", RomPath);
    }
}
