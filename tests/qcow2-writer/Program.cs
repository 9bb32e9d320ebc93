using KvmPS.Storage;
using KvmPS.Storage.Qcow2;

// Usage: qcow2-writer <image.qcow2> <seed> <strict:true|false> <ready-marker-file> [snapshots]
// Creates the marker file once writes are under way, then writes, discards and zeroes until killed;
// with "snapshots" it also creates, reverts to and deletes internal snapshots.
if (args.Length != 4 && !(args.Length == 5 && args[4] == "snapshots"))
{
    Console.Error.WriteLine("usage: qcow2-writer <image> <seed> <strict-metadata-ordering> <ready-marker-file> [snapshots]");
    return 2;
}
bool snapshots = args.Length == 5;
using var image = DiskImageFactory.OpenQcow2(args[0]);
image.StrictMetadataOrdering = bool.Parse(args[2]);
var random = new Random(int.Parse(args[1]));
var buffer = new byte[256 * 1024];
long operations = 0;
while (true)
{
    int length = random.Next(1, buffer.Length / 512) * 512;
    ulong offset = (ulong)random.NextInt64(0, (long)(image.SizeBytes - (ulong)length) / 512) * 512;
    int kind = random.Next(100);
    if (kind < 80)
    {
        random.NextBytes(buffer.AsSpan(0, length));
        image.Write(offset, buffer.AsSpan(0, length));
    }
    else if (kind < 90)
    {
        image.WriteZeroes(offset, (ulong)length, mayUnmap: random.Next(2) == 0);
    }
    else if (kind < 97)
    {
        image.Discard(offset, (ulong)length);
    }
    else if (snapshots && kind < 99)
    {
        var existing = image.ListSnapshots();
        int choice = random.Next(3);
        if (existing.Count == 0 || (choice == 0 && existing.Count < 4))
        {
            image.CreateSnapshot($"s{operations}", $"snapshot at {operations}", vmClockNs: (ulong)operations);
        }
        else if (choice == 1)
        {
            image.RevertToSnapshot(existing[random.Next(existing.Count)].Id);
        }
        else
        {
            image.DeleteSnapshot(existing[random.Next(existing.Count)].Id);
        }
    }
    else
    {
        image.Flush();
    }
    if (++operations == 20)
    {
        File.WriteAllText(args[3], "ready");
    }
}
