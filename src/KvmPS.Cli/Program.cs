namespace KvmPS.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var app = new CliApp(Console.In, Console.Out, Console.Error);
        return app.Run(args);
    }
}
