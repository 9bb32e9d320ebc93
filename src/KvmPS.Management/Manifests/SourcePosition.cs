namespace KvmPS.Management.Manifests;

/// <summary>A 1-based line/column location in a source file, printed as <c>file:line:column</c>.</summary>
public readonly record struct SourcePosition(string File, int Line, int Column)
{
    public override string ToString() => $"{File}:{Line}:{Column}";
}
