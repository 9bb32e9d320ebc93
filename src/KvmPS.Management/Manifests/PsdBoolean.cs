namespace KvmPS.Management.Manifests;

/// <summary><c>$true</c> / <c>$false</c> (or a <c>[bool]</c> cast).</summary>
public sealed class PsdBoolean : PsdValue
{
    public PsdBoolean(bool value, SourcePosition position) : base(position) => Value = value;

    public bool Value { get; }
    public override string KindName => "boolean";
    public override object? ToPlainObject() => Value;
    public override string ToString() => Value ? "True" : "False";
}
