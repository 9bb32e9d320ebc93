using System.Buffers.Binary;
using System.IO.Hashing;
using KvmPS.State;
using Xunit;

namespace KvmPS.Engine.Tests.State;

/// <summary>state.bin: encoding, and every kind of damage refused with an error naming the file.</summary>
public class SnapshotStateFileTests
{
    private const string FilePath = "/snap/state.bin";
    private static readonly StateRecord[] Records = [new("machine", 1, [1, 2, 3]), new("vcpu/0", 3, new byte[300]), new("empty", 1, [])];

    [Fact]
    public void RecordsRoundTripAndTheLayoutIsAsDocumented()
    {
        byte[] file = SnapshotStateFile.Encode(Records);
        Assert.Equal("KVMPSSNP"u8.ToArray(), file[..8]);
        Assert.Equal(SnapshotStateFile.FormatVersion, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(8)));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(12)));
        Assert.Equal(Crc64.HashToUInt64(file.AsSpan(0, file.Length - 8)), BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(file.Length - 8)));
        var back = SnapshotStateFile.Decode(file, FilePath);
        Assert.Equal(Records.Select(r => (r.Name, r.Version, Convert.ToHexString(r.Data))), back.Select(r => (r.Name, r.Version, Convert.ToHexString(r.Data))));
    }

    [Fact]
    public void AFlippedByteIsACrcMismatch()
    {
        byte[] file = SnapshotStateFile.Encode(Records);
        file[40] ^= 0x20;
        var e = Assert.Throws<SnapshotException>(() => SnapshotStateFile.Decode(file, FilePath));
        Assert.Equal(FilePath, e.Path);
        Assert.Contains("CRC-64", e.Message);
        Assert.StartsWith(FilePath, e.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(20)]
    [InlineData(100)]
    public void ATruncatedFileIsRefused(int keep)
    {
        byte[] file = SnapshotStateFile.Encode(Records)[..keep];
        var e = Assert.Throws<SnapshotException>(() => SnapshotStateFile.Decode(file, FilePath));
        Assert.Equal(FilePath, e.Path);
    }

    [Fact]
    public void ANewerFormatVersionIsRefusedAsSuch()
    {
        byte[] file = SnapshotStateFile.Encode(Records);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(8), SnapshotStateFile.FormatVersion + 1);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(file.Length - 8), Crc64.HashToUInt64(file.AsSpan(0, file.Length - 8)));
        var e = Assert.Throws<SnapshotException>(() => SnapshotStateFile.Decode(file, FilePath));
        Assert.Contains("newer", e.Message);
    }

    [Fact]
    public void ARecordRunningPastTheEndIsRefusedEvenWithAValidCrc()
    {
        byte[] file = SnapshotStateFile.Encode(Records);
        // The first record's length field (after magic, version, count, name length, "machine", version) claims more.
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(16 + 2 + 7 + 2), 1_000_000);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(file.Length - 8), Crc64.HashToUInt64(file.AsSpan(0, file.Length - 8)));
        var e = Assert.Throws<SnapshotException>(() => SnapshotStateFile.Decode(file, FilePath));
        Assert.Contains("runs past the end", e.Message);
    }

    [Fact]
    public void DuplicateRecordNamesAreNeverWritten()
        => Assert.Throws<InvalidOperationException>(() => SnapshotStateFile.Encode([new("a", 1, []), new("a", 1, [])]));
}
