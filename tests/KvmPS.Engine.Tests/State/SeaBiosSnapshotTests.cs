using System.Text;
using KvmPS.Devices.Virtio.Block;
using KvmPS.Devices.Config;
using KvmPS.Engine.Tests.Firmware;
using KvmPS.State;
using KvmPS.Vm;
using KvmPS.Vm.Boot;
using Xunit;
using Xunit.Abstractions;

namespace KvmPS.Engine.Tests.State;

/// <summary>SeaBIOS snapshotted while it runs, restored into a freshly built machine: it still boots the disk.</summary>
public class SeaBiosSnapshotTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [SeaBiosFact]
    public void FirmwareSnapshottedMidRunStillBootsTheDiskAfterRestore()
    {
        string dir = Directory.CreateTempSubdirectory("kvs").FullName;
        try
        {
            string disk = Path.Combine(dir, "disk.img");
            SeaBiosBootSector.WriteImage(disk);
            var debugcon = new StringBuilder();
            var config = new MachineConfig
            {
                FirmwarePath = FirmwareImage.SeaBiosAlias,
                DebugConOutput = data => { lock (debugcon) debugcon.Append(Encoding.ASCII.GetString(data)); },
                Devices = [new BlockDeviceConfig { Path = disk }],
            };
            string Log() { lock (debugcon) return debugcon.ToString(); }
            string snapshot = Path.Combine(dir, "snap");
            using (var first = new MachineBuilder(config, _ => { }).Boot())
            {
                first.Start();
                var deadline = DateTime.UtcNow + Timeout;
                // The whole banner ("SeaBIOS (version …)" and its "BUILD: …" line): a pause inside it would split the
                // BUILD: marker between the logs before and after.
                static bool BannerDone(string log) => log.IndexOf("BUILD:", StringComparison.Ordinal) is int at && at >= 0 && log.IndexOf('\n', at) > 0;
                while (!BannerDone(Log()) && DateTime.UtcNow < deadline) Thread.Sleep(1);
                Assert.True(first.Pause(TimeSpan.FromSeconds(5)));
                Assert.DoesNotContain("Booting from", Log()); // still in the firmware
                SnapshotDirectory.Write(snapshot, SnapshotStateFile.Encode(first.SaveState()), "{}", first.Memory);
            }
            string before = Log();
            lock (debugcon) debugcon.Clear();

            var serial = new StringBuilder();
            using var restored = new MachineBuilder(config, data => { lock (serial) serial.Append(Encoding.ASCII.GetString(data)); })
                .Restore(SnapshotDirectory.Open(snapshot), RestoreMemoryMode.Private);
            restored.Start();
            Assert.True(restored.Exited.Wait(Timeout), "the restored firmware did not finish booting");
            var exit = restored.Exited.Result;
            output.WriteLine("--- before ---\n" + before + "\n--- after ---\n" + Log() + "\n--- serial ---\n" + serial);
            Assert.True(exit.Kind == VmExitKind.DebugExit, $"expected a debug exit, got {exit.Kind}: {exit.Reason}");
            Assert.Equal(SeaBiosBootSector.ExitValue, exit.DebugExitValue);
            Assert.Contains(SeaBiosBootSector.Message, serial.ToString());
            // Continued, not restarted from the reset vector: a restart prints the banner first, a continued POST prints
            // its next lines first (SeaBIOS shows the banner once more later, once its text console is up).
            string after = Log();
            int post = after.IndexOf("Running on KVM", StringComparison.Ordinal);
            int banner = after.IndexOf("SeaBIOS (version", StringComparison.Ordinal);
            Assert.True(post >= 0 && (banner < 0 || post < banner), after);
            Assert.Contains("Booting from", after);
        }
        finally { Directory.Delete(dir, true); }
    }
}
