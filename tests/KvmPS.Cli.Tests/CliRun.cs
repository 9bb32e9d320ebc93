using KvmPS.Cli;
using KvmPS.Management.Lifecycle;

namespace KvmPS.Cli.Tests;

/// <summary>Runs <c>kvmps</c> in-process against a test's manager, with captured output.</summary>
internal static class CliRun
{
    public static (int Code, string Out, string Err) With(VmManager manager, string stdin, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = new CliApp(new StringReader(stdin), output, error, () => manager).Run(args);
        return (code, output.ToString(), error.ToString());
    }
}
