namespace KvmPS.Vm;

/// <summary>The project's own small guest (guest/), embedded in the engine: what the VMM boots when no kernel is given.</summary>
public static class BuiltInGuest
{
    public const string DisplayName = "(built-in guest)";
    private const string ResourceName = "kvmps-guest.elf";

    public static byte[] Image()
    {
        using var stream = typeof(BuiltInGuest).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"The built-in guest ({ResourceName}) was not embedded: build it with 'make -C guest' before building the engine.");
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return bytes;
    }
}
