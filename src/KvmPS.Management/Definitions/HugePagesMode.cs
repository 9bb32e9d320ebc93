namespace KvmPS.Management.Definitions;

/// <summary>How guest RAM is backed on the host.</summary>
public enum HugePagesMode
{
    /// <summary>Ordinary 4 KiB anonymous pages.</summary>
    None,

    /// <summary>Transparent huge pages (<c>madvise(MADV_HUGEPAGE)</c>).</summary>
    Thp,

    /// <summary>Pre-reserved 2 MiB pages from hugetlbfs; memory sizes must be 2 MiB multiples.</summary>
    Hugetlbfs,
}
