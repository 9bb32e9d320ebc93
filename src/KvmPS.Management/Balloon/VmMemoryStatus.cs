using KvmPS.Management.Lifecycle;
using KvmPS.Management.Vmm;

namespace KvmPS.Management.Balloon;

/// <summary>
/// A VM's memory as configured and as used: the balloon range from the definition and, while a VMM runs, what it
/// mapped and how much of it is resident. Shown by <c>Invoke-KvmBalloon</c> without a target and by the CLI.
/// </summary>
public sealed record VmMemoryStatus
{
    public required string Name { get; init; }
    public required VmState State { get; init; }
    public bool BalloonEnabled { get; init; }

    /// <summary>
    /// The memory the guest is meant to have: while a balloon runs, the booted memory minus the balloon's target
    /// (what Invoke-KvmBalloon -TargetBytes set); otherwise the definition's MemoryStartupBytes, what the VM boots with.
    /// </summary>
    public long TargetBytes { get; init; }

    public long MinimumBytes { get; init; }
    public long MaximumBytes { get; init; }

    /// <summary>Guest RAM the running VMM mapped (<c>describe.memory_bytes</c>); null when not running.</summary>
    public long? CurrentBytes { get; init; }

    /// <summary>Resident guest RAM (<c>metrics.guest_rss_bytes</c>): memory the guest actually touched.</summary>
    public long? GuestResidentBytes { get; init; }

    /// <summary>Resident memory of the whole VMM process (<c>metrics.rss_bytes</c>).</summary>
    public long? ProcessResidentBytes { get; init; }

    /// <summary>The balloon's size now (guest memory handed back to the host), from <c>balloon.get</c>; null without a running balloon.</summary>
    public long? BalloonActualBytes { get; init; }

    /// <summary>The size the balloon is moving to; null without a running balloon.</summary>
    public long? BalloonTargetBytes { get; init; }

    /// <summary>Memory the guest can use now: booted memory minus the balloon.</summary>
    public long? GuestUsableBytes => CurrentBytes is { } current ? current - (BalloonActualBytes ?? 0) : null;

    /// <summary>The guest's own memory statistics (virtio-balloon stats: free_memory, total_memory, available_memory, …).</summary>
    public IReadOnlyDictionary<string, long> GuestStats { get; init; } = new Dictionary<string, long>();

    /// <summary>The running VM booted with a different size than the target and has no balloon to move it: restart.</summary>
    public bool RestartNeeded => CurrentBytes is { } current && current != TargetBytes && BalloonActualBytes is null;
}

public static class VmMemoryStatusReader
{
    /// <summary>Reads the VM (throws VmNotFoundException) and, if a VMM answers, its metrics. Never fails for a VMM that stops meanwhile.</summary>
    public static VmMemoryStatus Read(VmManager manager, string name)
    {
        ArgumentNullException.ThrowIfNull(manager);
        return FromInfo(manager.Get(name), manager.Options.QueryTimeout);
    }

    public static VmMemoryStatus FromInfo(VmInfo info, TimeSpan queryTimeout)
    {
        ArgumentNullException.ThrowIfNull(info);
        var memory = info.Definition.Memory;
        long? guestRss = null, rss = null, balloonActual = null, balloonTarget = null;
        var stats = new Dictionary<string, long>();
        if (info.Live is not null)
        {
            try
            {
                using var client = VmmClient.Connect(info.SocketPath, queryTimeout, queryTimeout);
                var metrics = client.Metrics();
                guestRss = metrics.GuestRssBytes;
                rss = metrics.RssBytes;
                if (info.Definition.BalloonEnabled)
                {
                    var balloon = client.GetBalloon();
                    balloonActual = balloon.ActualBytes;
                    balloonTarget = balloon.TargetBytes;
                    foreach (var (name, value) in balloon.Stats) stats[name] = value;
                }
            }
            catch (VmmException)
            {
                // Stopped meanwhile: report the definition only.
            }
        }
        return new VmMemoryStatus
        {
            Name = info.Name,
            State = info.State,
            BalloonEnabled = info.Definition.BalloonEnabled,
            TargetBytes = info.Live?.MemoryBytes is { } booted && balloonTarget is { } inflate ? booted - inflate : memory.StartupBytes,
            MinimumBytes = memory.MinimumBytes,
            MaximumBytes = memory.MaximumBytes,
            CurrentBytes = info.Live?.MemoryCurrentBytes,
            GuestResidentBytes = guestRss,
            ProcessResidentBytes = rss,
            BalloonActualBytes = balloonActual,
            BalloonTargetBytes = balloonTarget,
            GuestStats = stats,
        };
    }
}
