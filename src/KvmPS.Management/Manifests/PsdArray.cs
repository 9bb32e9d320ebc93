namespace KvmPS.Management.Manifests;

/// <summary><c>@( ... )</c>, a bare comma list <c>1, 2, 3</c>, or a unary comma <c>,1</c>.</summary>
public sealed class PsdArray : PsdValue
{
    public PsdArray(IReadOnlyList<PsdValue> items, SourcePosition position) : base(position) => Items = items;

    public IReadOnlyList<PsdValue> Items { get; }
    public int Count => Items.Count;
    public PsdValue this[int index] => Items[index];

    public override string KindName => "array";

    public override object? ToPlainObject()
    {
        var plain = new object?[Items.Count];
        for (var i = 0; i < plain.Length; i++)
            plain[i] = Items[i].ToPlainObject();
        return plain;
    }
}
