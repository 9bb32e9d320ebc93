using System.Text;
using KvmPS.Vm;

namespace KvmPS.Engine.Tests.Support;

/// <summary>Runs a VM in-process and captures its serial output.</summary>
internal sealed class GuestRun : IDisposable
{
    private readonly StringBuilder _output = new();
    private readonly object _lock = new();
    public VirtualMachine Machine { get; }

    public GuestRun(MachineConfig config)
    {
        Machine = VirtualMachine.Create(config, data => { lock (_lock) _output.Append(Encoding.ASCII.GetString(data)); });
    }

    public string Output { get { lock (_lock) return _output.ToString(); } }

    public VmExit RunToExit(TimeSpan timeout)
    {
        Machine.Start();
        if (!Machine.Exited.Wait(timeout))
        {
            Machine.Stop("test timeout");
            throw new TimeoutException($"guest did not exit within {timeout}; output so far:\n{Output}");
        }
        return Machine.Exited.Result;
    }

    public bool WaitForOutput(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (Output.Contains(text)) return true;
            if (Machine.Exited.IsCompleted) return Output.Contains(text);
            Thread.Sleep(5);
        }
        return false;
    }

    public void Type(string text) => Machine.Serial.EnqueueInput(Encoding.ASCII.GetBytes(text));

    public void Dispose() => Machine.Dispose();
}
