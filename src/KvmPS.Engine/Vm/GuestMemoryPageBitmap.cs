using System.Numerics;

namespace KvmPS.Vm;

/// <summary>
/// A set of guest RAM pages, one bit per 4 KiB page, numbered as in a snapshot memory file: the RAM regions back to
/// back in guest-address order (page i is at file offset i × 4096). Not thread-safe; the live, concurrently marked
/// bitmap is inside <see cref="GuestMemory"/>.
/// </summary>
public sealed class GuestPageBitmap
{
    private readonly ulong[] _words;

    public GuestPageBitmap(ulong pageCount)
    {
        PageCount = pageCount;
        _words = new ulong[WordsFor(pageCount)];
    }

    /// <summary>A bitmap over <paramref name="pageCount"/> pages from its 64-bit words (bits past the end must be clear).</summary>
    public GuestPageBitmap(ulong pageCount, ReadOnlySpan<ulong> words) : this(pageCount)
    {
        if (words.Length != _words.Length) throw new ArgumentException($"{pageCount} pages need {_words.Length} words, not {words.Length}.", nameof(words));
        words.CopyTo(_words);
        if (pageCount % 64 != 0 && (_words[^1] >> (int)(pageCount % 64)) != 0)
            throw new ArgumentException($"bits beyond page {pageCount} are set", nameof(words));
    }

    public static int WordsFor(ulong pageCount) => checked((int)((pageCount + 63) / 64));

    public ulong PageCount { get; }
    public ReadOnlySpan<ulong> Words => _words;

    public bool Contains(ulong page) => page < PageCount && (_words[page >> 6] & (1UL << (int)(page & 63))) != 0;

    public void Add(ulong page)
    {
        if (page >= PageCount) throw new ArgumentOutOfRangeException(nameof(page), $"page {page} is beyond the {PageCount} pages of this bitmap");
        _words[page >> 6] |= 1UL << (int)(page & 63);
    }

    public void AddRange(ulong first, ulong count)
    {
        if (count > PageCount || first > PageCount - count)
            throw new ArgumentOutOfRangeException(nameof(count), $"pages {first}+{count} go beyond the {PageCount} pages of this bitmap");
        ulong p = first, end = first + count;
        for (; p < end && (p & 63) != 0; p++) _words[p >> 6] |= 1UL << (int)(p & 63);
        for (; p + 64 <= end; p += 64) _words[p >> 6] = ulong.MaxValue;
        for (; p < end; p++) _words[p >> 6] |= 1UL << (int)(p & 63);
    }

    /// <summary>Adds the set bits of <paramref name="bits"/> (bit i = page <paramref name="firstPage"/> + i), e.g. one KVM slot's dirty log.</summary>
    public void UnionWith(ulong firstPage, ReadOnlySpan<ulong> bits)
    {
        for (int w = 0; w < bits.Length; w++)
        {
            ulong word = bits[w];
            if (word == 0) continue;
            if (firstPage % 64 == 0 && firstPage + (ulong)w * 64 + 64 <= PageCount)
            {
                _words[(firstPage >> 6) + (ulong)w] |= word; // aligned: one OR per word
                continue;
            }
            while (word != 0)
            {
                int bit = BitOperations.TrailingZeroCount(word);
                Add(firstPage + (ulong)w * 64 + (ulong)bit);
                word &= word - 1;
            }
        }
    }

    public void UnionWith(GuestPageBitmap other)
    {
        if (other.PageCount != PageCount) throw new ArgumentException($"bitmaps of {PageCount} and {other.PageCount} pages cannot be joined", nameof(other));
        for (int i = 0; i < _words.Length; i++) _words[i] |= other._words[i];
    }

    public void Clear() => Array.Clear(_words);

    /// <summary>How many pages are in the set.</summary>
    public ulong Count
    {
        get
        {
            ulong n = 0;
            foreach (ulong w in _words) n += (ulong)BitOperations.PopCount(w);
            return n;
        }
    }

    /// <summary>The set as runs of consecutive pages (first page, page count), in page order.</summary>
    public IEnumerable<(ulong First, ulong Count)> Runs()
    {
        ulong page = 0;
        while (page < PageCount)
        {
            int w = (int)(page >> 6);
            ulong word = _words[w] & (ulong.MaxValue << (int)(page & 63));
            if (word == 0) { page = (ulong)(w + 1) * 64; continue; }
            ulong start = (ulong)w * 64 + (ulong)BitOperations.TrailingZeroCount(word);
            ulong end = start;
            while (end < PageCount && Contains(end))
            {
                if ((end & 63) == 0 && end + 64 <= PageCount && _words[end >> 6] == ulong.MaxValue) end += 64;
                else end++;
            }
            yield return (start, end - start);
            page = end;
        }
    }
}
