using KvmPS.Devices.Display;
using KvmPS.Interop;

namespace KvmPS.Engine.Tests.Devices.Display;

/// <summary>A fact that needs /dev/kvm.</summary>
public sealed class KvmDeviceFactAttribute : FactAttribute
{
    public KvmDeviceFactAttribute() { if (!File.Exists("/dev/kvm")) Skip = "/dev/kvm is missing."; }
}

/// <summary>The framebuffer's KVM memory slot on a real KVM VM: added, moved, removed, and its dirty log read.</summary>
public sealed class KvmVramSlotTests
{
    [KvmDeviceFact]
    public void TheSlotMovesAndItsDirtyLogIsReadableOnlyWhileMapped()
    {
        using var system = Kvm.OpenSystem("/dev/kvm");
        using var vm = Kvm.CreateVm(system);
        using var vram = new Vram(4 << 20);
        var slot = new KvmVramSlot(vm, new KvmPS.Vm.BitmapDirtyLog(vm), DisplayDeviceConfig.VramSlotNumber, vram);
        var log = new ulong[vram.PageCount / 64];
        Assert.False(slot.TakeDirtyLog(log));             // not mapped: no log
        slot.MapAt(0xC000_0000);
        Assert.True(slot.TakeDirtyLog(log));
        Assert.DoesNotContain(log, w => w != 0);          // nothing ran
        slot.MapAt(0xD000_0000);                          // BAR 0 moved: the slot goes with it
        Assert.True(slot.TakeDirtyLog(log));
        slot.MapAt(0xD000_0000);                          // same place: nothing to do
        slot.MapAt(null);                                 // decoding off: the old slot's log is kept for one more take
        Assert.True(slot.TakeDirtyLog(log));
        Assert.False(slot.TakeDirtyLog(log));
        slot.MapAt(0xC000_0000);                          // and back, at a place the old slot left free
        Assert.True(slot.TakeDirtyLog(log));
        slot.MapAt(null);
    }
}
