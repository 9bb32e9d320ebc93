namespace KvmPS.Management.Manifests;

public sealed class PsdString : PsdValue
{
    public PsdString(string value, SourcePosition position) : base(position) => Value = value;

    public string Value { get; }
    public override string KindName => "string";
    public override object? ToPlainObject() => Value;
    public override string ToString() => Value;
}
