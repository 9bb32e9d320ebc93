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
                // The whole banner line: a pause inside it would split "BUILD:" between the logs before and after.
                static bool BannerDone(string log) => log.IndexOf("SeaBIOS (version", StringComparison.Ordinal) is int at && at >= 0 && log.IndexOf('\n', at) > 0;
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
            // Continued, not restarted from the reset vector: the POST lines after the banner come without a new banner
            // (SeaBIOS prints its version once more later, on the console it sets up).
            // The two logs are read as one: the pause may fall inside the BUILD: line and split it between them.
            string after = Log(), both = before + after;
            int build = both.IndexOf("BUILD:", StringComparison.Ordinal);
            Assert.True(build >= 0, both);
            Assert.Single(System.Text.RegularExpressions.Regex.Matches(both[..build], System.Text.RegularExpressions.Regex.Escape("SeaBIOS (version")));
            Assert.DoesNotContain("SeaBIOS (version", after.IndexOf('\n') is int nl and >= 0 ? after[..nl] : after); // the restored firmware goes on mid-line, no new banner
        }
        finally { Directory.Delete(dir, true); }
    }
}
