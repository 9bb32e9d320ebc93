using System.Text.Json;

namespace KvmPS.Engine.Tests.Support;

internal static class HotAddedDisk
{
    /// <summary>
    /// device.add of the image <paramref name="disk"/>. A jailed VMM may not open the test's root-owned image, so it is
    /// passed open (docs/vmm.md, "Passing open files"), as management passes it; an unjailed one opens it by path.
    /// </summary>
    public static JsonElement AddDisk(this ControlClient client, string disk, string extra = "")
    {
        string args = $"\"device\": {{\"type\": \"block\", \"path\": \"{disk}\"}}{extra}";
        if (VmmProcess.JailedAs is null) return client.Ok("device.add", args);
        using var image = File.OpenHandle(disk, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var reply = client.RequestWithFiles("device.add", args + ", \"passed_files\": 1", [image]);
        if (!reply.GetProperty("ok").GetBoolean()) throw new InvalidOperationException($"device.add failed: {reply}");
        return reply.GetProperty("result");
    }
}
