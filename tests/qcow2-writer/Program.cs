using KvmPS.Storage;
using KvmPS.Storage.Qcow2;

// Usage: qcow2-writer <image.qcow2> <seed> <strict:true|false> <ready-marker-file>
// Creates the marker file once writes are under way, then writes, discards and zeroes until killed.
if (args.Length != 4)
{
    Console.Error.WriteLine("usage: qcow2-writer <image> <seed> <strict-metadata-ordering> <ready-marker-file>");
    return 2;
}
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
    else
    {
        image.Flush();
    }
    if (++operations == 20)
    {
        File.WriteAllText(args[3], "ready");
    }
}
