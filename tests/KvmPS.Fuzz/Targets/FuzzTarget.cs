namespace KvmPS.Fuzz.Targets;

/// <summary>
/// One fuzz target: a pure in-process function over the input bytes. <see cref="Run"/> returns normally for every input
/// the code under test handles as designed, including the typed format errors it is meant to throw; anything else
/// (NullReference, IndexOutOfRange, OutOfMemory, an invariant broken, a hang) escapes and is a finding.
/// </summary>
internal interface IFuzzTarget
{
    string Name { get; }
    string Description { get; }
    void Run(ReadOnlySpan<byte> input);
    /// <summary>The seed corpus: small valid and near-valid inputs (written to fuzz/corpus/NAME by <c>seeds</c>).</summary>
    IEnumerable<(string Name, byte[] Data)> Seeds();
}

/// <summary>A property of the code under test that does not hold: always a finding.</summary>
internal sealed class FuzzInvariantException(string message) : Exception(message);
