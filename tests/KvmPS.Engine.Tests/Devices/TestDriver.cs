using System.Buffers.Binary;
using KvmPS.Devices.Virtio;

namespace KvmPS.Engine.Tests.Devices;

/// <summary>Drives a <see cref="VirtioPciTransport"/> the way a guest driver does, through BAR0 and config space, without KVM.</summary>
internal sealed class TestDriver(VirtioPciTransport t)
{
    private readonly KvmPS.Devices.Pci.PciBar _bar = t.Bar(0)!;

    public ulong Read(ulong offset, int size)
    {
        Span<byte> b = stackalloc byte[8];
        t.DispatchBarRead(_bar, offset, b[..size]);
        return BinaryPrimitives.ReadUInt64LittleEndian(b);
    }

    public void Write(ulong offset, int size, ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, value);
        t.DispatchBarWrite(_bar, offset, b[..size]);
    }

    public byte Status => (byte)Read(0x14, 1);
    public void WriteStatus(byte s) => Write(0x14, 1, s);

    public ulong DeviceFeatures()
    {
        Write(0x00, 4, 0);
        ulong lo = Read(0x04, 4);
        Write(0x00, 4, 1);
        return lo | Read(0x04, 4) << 32;
    }

    /// <summary>Reset, ACK, DRIVER, features (VERSION_1 + extra), FEATURES_OK; returns whether the device kept FEATURES_OK.</summary>
    public bool Negotiate(ulong extra, bool version1 = true)
    {
        WriteStatus(0);
        WriteStatus(VirtioStatus.Acknowledge);
        WriteStatus(VirtioStatus.Acknowledge | VirtioStatus.Driver);
        ulong want = extra | (version1 ? VirtioFeatures.Version1 : 0);
        Write(0x08, 4, 0);
        Write(0x0C, 4, (uint)want);
        Write(0x08, 4, 1);
        Write(0x0C, 4, want >> 32);
        WriteStatus(VirtioStatus.Acknowledge | VirtioStatus.Driver | VirtioStatus.FeaturesOk);
        return (Status & VirtioStatus.FeaturesOk) != 0;
    }

    public void SetupQueue(ushort index, TestRing ring, ushort msixVector = 0xFFFF)
    {
        Write(0x16, 2, index);
        Write(0x18, 2, ring.Size);
        Write(0x1A, 2, msixVector);
        Write(0x20, 4, (uint)ring.Desc); Write(0x24, 4, ring.Desc >> 32); // 64-bit fields as two dwords, like Linux
        Write(0x28, 8, ring.Avail);
        Write(0x30, 8, ring.Used);
        Write(0x1C, 2, 1);
    }

    public void DriverOk() => WriteStatus(VirtioStatus.Acknowledge | VirtioStatus.Driver | VirtioStatus.FeaturesOk | VirtioStatus.DriverOk);

    /// <summary>MMIO notify (the synchronous path used when there are no ioeventfds).</summary>
    public void Notify(ushort queue) => Write(VirtioPciTransport.NotifyOffset + VirtioPciTransport.NotifyMultiplier * queue, 2, queue);
}
