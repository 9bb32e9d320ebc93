namespace KvmPS.Management.Manifests;

/// <summary><c>$null</c>.</summary>
public sealed class PsdNull : PsdValue
{
    public PsdNull(SourcePosition position) : base(position) { }

    public override string KindName => "null";
    public override object? ToPlainObject() => null;
    public override string ToString() => "";
}
