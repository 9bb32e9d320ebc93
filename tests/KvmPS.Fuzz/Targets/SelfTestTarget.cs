namespace KvmPS.Fuzz.Targets;

/// <summary>
/// Not in the list that CI runs: a planted bug (a NullReferenceException behind a three-byte comparison) that shows the
/// tool chain finds and reports crashes: <c>./build.sh fuzz selftest 30</c> must fail with a crash saved.
/// </summary>
internal sealed class SelfTestTarget : IFuzzTarget
{
    public string Name => "selftest";
    public string Description => "a planted bug, to check that afl-fuzz + SharpFuzz report crashes";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length >= 3 && input[0] == 'K' && input[1] == 'v' && input[2] == 'm')
        {
            string? s = input.Length > 1000 ? "unreachable" : null;
            _ = s!.Length;
        }
    }

    public IEnumerable<(string, byte[])> Seeds() => [("hello", "hello"u8.ToArray())];
}
