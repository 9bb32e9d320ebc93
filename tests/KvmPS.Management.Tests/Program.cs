using System.Diagnostics;
using KvmPS.Management.Definitions;
using KvmPS.Management.Store;

namespace KvmPS.Management.Tests;

/// <summary>
/// Entry point used only when a test re-launches this assembly as a helper process
/// (<c>dotnet exec KvmPS.Management.Tests.dll &lt;mode&gt; ...</c>); the test runner never calls it.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        switch (args[0])
        {
            case "increment":
                // increment <root> <iterations>: read-modify-write a counter under the store lock.
                Increment(VmStore.Open(args[1]), args[1], int.Parse(args[2]));
                return 0;
            case "create-many":
                // create-many <root> <prefix> <count>
                var store = VmStore.Open(args[1]);
                for (var i = 0; i < int.Parse(args[3]); i++)
                    store.Create(TestDefinitions.Minimal($"{args[2]}-{i}"));
                return 0;
            case "create-same":
                // create-same <root> <name>: exit 0 if created, 3 if it already existed.
                try
                {
                    VmStore.Open(args[1]).Create(TestDefinitions.Minimal(args[2]));
                    return 0;
                }
                catch (VmAlreadyExistsException)
                {
                    return 3;
                }
            case "crash-create":
            case "crash-delete":
                // crash-create|crash-delete <root> <name> <step>: SIGKILL ourselves at the step.
                var crashing = VmStore.Open(args[1]);
                crashing.StepHook = step =>
                {
                    if (step == args[3])
                        Process.GetCurrentProcess().Kill();
                };
                if (args[0] == "crash-create")
                    crashing.Create(TestDefinitions.Minimal(args[2]));
                else
                    crashing.Delete(args[2], DiskRetention.Keep);
                return 2; // the step was never reached
            case "hold-lock":
                // hold-lock <root> <ms>
                var holder = VmStore.Open(args[1]);
                using (holder.Lock())
                {
                    Console.WriteLine("locked");
                    Console.Out.Flush();
                    Thread.Sleep(int.Parse(args[2]));
                }
                return 0;
            case "start-vm":
                // start-vm <root> <vmm-binary> <name>: start an existing VM, print its pid, exit at once.
                var manager = new KvmPS.Management.Lifecycle.VmManager(VmStore.Open(args[1]), new KvmPS.Management.Vmm.VmmProcessLauncher(args[2]));
                Console.WriteLine(manager.Start(args[3]).Pid);
                return 0;
            default:
                Console.Error.WriteLine($"unknown helper mode {args[0]}");
                return 64;
        }
    }

    internal static void Increment(VmStore store, string root, int iterations)
    {
        var counter = Path.Combine(root, "counter");
        for (var i = 0; i < iterations; i++)
        {
            using (store.Lock())
            {
                var value = File.Exists(counter) ? int.Parse(File.ReadAllText(counter)) : 0;
                Thread.Yield(); // widen the race window: without the lock, updates would be lost
                File.WriteAllText(counter, (value + 1).ToString());
            }
        }
    }
}
