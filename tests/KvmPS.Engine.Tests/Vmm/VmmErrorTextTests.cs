using System.Text.RegularExpressions;
using KvmPS.Contract;
using KvmPS.Engine.Tests.Support;
using KvmPS.Vmm;

namespace KvmPS.Engine.Tests.Vmm;

/// <summary>
/// The published kvmps-vmm (NativeAOT with UseSystemResourceKeys: the runtime's messages are bare resource keys) says
/// in words what is wrong with a file and names it. Regression (issue 17): a missing file gave
/// <c>IO_PathNotFound_Path</c>.
/// </summary>
[Collection("vmm-process")]
public sealed class VmmErrorTextTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _dir = Directory.CreateTempSubdirectory("kvmps-errtext-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }

    /// <summary>A resource key as the trimmed runtime prints it: <c>IO_Something_Word</c>.</summary>
    private static readonly Regex ResourceKey = new(@"\b[A-Z][A-Za-z]*_[A-Za-z_]+\b");

    [Fact]
    public void FileErrorsAreWordsNamingThePath()
    {
        string missingDir = Path.Combine(_dir, "no-such-dir");
        var cases = new (string[] Args, int Status, string Path, string Words)[]
        {
            (["--config", Path.Combine(missingDir, "vm.json")], VmmExitCode.UsageError, Path.Combine(missingDir, "vm.json"), "no such directory"),
            (["--config", Path.Combine(_dir, "vm.json")], VmmExitCode.UsageError, Path.Combine(_dir, "vm.json"), "no such file"),
            (["--serial", "none", "--kernel", Path.Combine(missingDir, "vmlinuz")], VmmExitCode.BadImage, Path.Combine(missingDir, "vmlinuz"), "no such directory"),
            (["--serial", "none", "--kernel", _dir], VmmExitCode.BadImage, _dir, "it is a directory"),
            (["--serial", "file:" + _dir], VmmExitCode.UsageError, _dir, "it is a directory"),
        };
        foreach (var (args, status, path, words) in cases)
        {
            var (code, stdout, stderr) = VmmProcess.Run(Timeout, args);
            string all = $"{string.Join(' ', args)} -> exit {code}: {stderr}";
            Assert.True(code == status, all);
            Assert.Contains(path, stderr);
            Assert.Contains(words, stderr);
            Assert.DoesNotMatch(ResourceKey, stderr.Replace("kvmps-vmm", ""));
        }
    }

    [Fact]
    public void ABareResourceKeyIsNeverShown()
    {
        Assert.Equal("no such directory", IoErrorText.Describe(new IOException("IO_PathNotFound_Path, /x/y")));
        Assert.Equal("the file is in use by another process", IoErrorText.Describe(new IOException("IO_SharingViolation_File, /x")));
        Assert.Equal("I/O error (IO Something Odd)", IoErrorText.Describe(new IOException("IO_Something_Odd, /x")));
        Assert.Equal("Input/output error : '/x'", IoErrorText.Describe(new IOException("Input/output error : '/x'")));
    }
}
