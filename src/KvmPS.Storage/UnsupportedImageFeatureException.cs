namespace KvmPS.Storage;

/// <summary>The image is valid but uses a feature this implementation does not handle.</summary>
public sealed class UnsupportedImageFeatureException : DiskImageException
{
    public UnsupportedImageFeatureException(string path, string featureName, string message)
        : base(path, message)
    {
        FeatureName = featureName;
    }

    /// <summary>Short name of the unsupported feature (e.g. "extended L2 entries").</summary>
    public string FeatureName { get; }
}
