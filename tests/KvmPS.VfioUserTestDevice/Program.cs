using System.Net.Sockets;
using KvmPS.VfioUserTestDevice;

// vfio-user test device server (README.md in this folder). Prints "listening on PATH" once the socket accepts.
const string Usage = "usage: KvmPS.VfioUserTestDevice --socket PATH [--config-bytes 256|4096] [--once] [--bad-version] " +
                     "[--oversized-reply] [--malformed-reply] [--crash-after MESSAGES] [--crash-on-dma N] [--intx]";
string? socketPath = null;
int configBytes = 4096, crashAfter = 0, crashOnDma = 0;
bool once = false, badVersion = false, oversized = false, malformed = false, intx = false;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    int NextCount()
    {
        string name = args[i], text = Next();
        return int.TryParse(text, out int n) && n > 0 ? n : throw new ArgumentException($"{name}: '{text}' is not a positive count");
    }
    try
    {
        switch (args[i])
        {
            case "--socket": socketPath = Next(); break;
            case "--config-bytes":
                configBytes = NextCount();
                if (configBytes is not (256 or 4096)) throw new ArgumentException($"--config-bytes: {configBytes} is neither 256 nor 4096");
                break;
            case "--once": once = true; break;
            case "--bad-version": badVersion = true; break;
            case "--oversized-reply": oversized = true; break;
            case "--malformed-reply": malformed = true; break;
            case "--crash-after": crashAfter = NextCount(); break;
            case "--crash-on-dma": crashOnDma = NextCount(); break;
            case "--intx": intx = true; break;
            default: throw new ArgumentException($"unknown option '{args[i]}'");
        }
    }
    catch (ArgumentException e)
    {
        Console.Error.WriteLine($"vfio-user-test-device: {e.Message}\n{Usage}");
        return 2;
    }
}
if (socketPath is null) { Console.Error.WriteLine(Usage); return 2; }

File.Delete(socketPath);
using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
listener.Bind(new UnixDomainSocketEndPoint(socketPath));
listener.Listen(1);
using var device = new TestDevice(configBytes, intx) { CrashOnDma = crashOnDma };
var faults = new Faults(badVersion, oversized, malformed, crashAfter);
Console.WriteLine($"listening on {socketPath}");
Console.Out.Flush();
do
{
    using Socket client = listener.Accept();
    Console.Error.WriteLine("vfio-user-test-device: client connected");
    new Server(device, faults, Console.Error).Run(new Connection(client));
    // The next client starts from a device that holds nothing of this one: no DMA maps, no eventfds.
    device.Dma.UnmapAll();
    device.Irqs.DisableAll();
} while (!once);
File.Delete(socketPath);
return 0;
