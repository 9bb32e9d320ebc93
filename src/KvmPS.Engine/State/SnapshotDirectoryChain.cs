using KvmPS.Vm;

namespace KvmPS.State;

public static partial class SnapshotDirectory
{
    /// <summary>Longest diff chain a restore follows; deeper is refused (and a loop is caught before that).</summary>
    public const int MaxChainLength = 4096;

    /// <summary>
    /// The memory files a restore of <paramref name="dir"/> needs, the full base first: a full snapshot is its own
    /// base; a diff follows parent links. Refused, naming the file: a parent file that is empty or not an absolute
    /// path, a parent that does not exist, a chain that comes back to a directory it passed, a parent whose state.bin
    /// is not the one the child was taken on (CRC-64 recorded in the child's pages.bin), a diff without pages.bin.
    /// </summary>
    private static IReadOnlyList<SnapshotMemoryLayer> MemoryChain(string dir, string memoryPath, long memoryBytes)
    {
        var layers = new List<SnapshotMemoryLayer>();
        var visited = new HashSet<string>(StringComparer.Ordinal) { dir };
        string current = dir, currentMemory = memoryPath;
        long currentBytes = memoryBytes;
        while (true)
        {
            string parentFile = System.IO.Path.Combine(current, ParentFileName);
            if (!File.Exists(parentFile))
            {
                layers.Add(new SnapshotMemoryLayer(current, currentMemory, currentBytes, null));
                break;
            }
            string pagesPath = System.IO.Path.Combine(current, SnapshotPagesFile.FileName);
            var pages = SnapshotPagesFile.Decode(ReadAll(pagesPath, "diff page list"), pagesPath);
            layers.Add(new SnapshotMemoryLayer(current, currentMemory, currentBytes, pages.Pages));
            if (layers.Count >= MaxChainLength) throw new SnapshotException(parentFile, $"the diff chain is longer than {MaxChainLength} snapshots");

            string parent = System.Text.Encoding.UTF8.GetString(ReadAll(parentFile, "parent file")).Trim();
            if (parent.Length == 0 || !System.IO.Path.IsPathFullyQualified(parent))
                throw new SnapshotException(parentFile, $"the parent file must hold the absolute path of the parent snapshot directory, not '{parent}'");
            parent = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(parent));
            if (!visited.Add(parent)) throw new SnapshotException(parentFile, $"the diff chain loops: parent {parent} is already in the chain");
            if (!System.IO.Directory.Exists(parent)) throw new SnapshotException(parentFile, $"the parent snapshot {parent} does not exist");
            string parentState = System.IO.Path.Combine(parent, StateFileName);
            byte[] state = ReadAll(parentState, "parent's state file");
            SnapshotStateFile.Decode(state, parentState);
            ulong crc = StateCrcOf(state);
            if (crc != pages.ParentStateCrc)
                throw new SnapshotException(parentState,
                    $"this is not the parent the diff {current} was taken on (state.bin CRC-64 0x{crc:x16}, the diff recorded 0x{pages.ParentStateCrc:x16}): the parent was replaced or changed");
            current = parent;
            currentMemory = System.IO.Path.Combine(parent, MemoryFileName);
            if (!File.Exists(currentMemory)) throw new SnapshotException(currentMemory, "the memory file is missing");
            currentBytes = new FileInfo(currentMemory).Length;
        }
        layers.Reverse();
        return layers;
    }
}
