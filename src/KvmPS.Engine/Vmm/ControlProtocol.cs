namespace KvmPS.Vmm;

/// <summary>
/// The control protocol (docs/vmm.md): one JSON object per line in each direction over a Unix stream socket.
/// Request: <c>{"id": any, "request": NAME, ...arguments}</c>. Reply: <c>{"id": same, "ok": true, "result": {...}}</c>
/// or <c>{"id": same, "ok": false, "error": {"code": CODE, "message": TEXT}}</c>.
/// </summary>
public static class ControlProtocol
{
    /// <summary>Request names, each with when it is allowed.</summary>
    public static class Requests
    {
        /// <summary>Any state: configuration, process and host facts.</summary>
        public const string Describe = "describe";
        /// <summary>Any state: VM state, uptime, vCPU states, and how the VM ended (reason, registers on a crash).</summary>
        public const string Status = "status";
        /// <summary>Any state: exit counts by reason, vCPU states, process RSS.</summary>
        public const string Metrics = "metrics";
        /// <summary>Running (Paused: no-op). Returns once every vCPU is parked.</summary>
        public const string Pause = "pause";
        /// <summary>Paused (Running: no-op).</summary>
        public const string Resume = "resume";
        /// <summary>Any state. <c>graceful</c> (default true) presses the ACPI power button and waits <c>timeout_ms</c>
        /// (default 10000) for the guest to power off, then stops it by force. The process exits after replying.</summary>
        public const string Stop = "stop";
        /// <summary>Running or Paused. After the reply the connection is a raw byte stream both ways with the guest
        /// console; <c>replay</c> (default true) first sends the last 64 KiB of output.</summary>
        public const string ConsoleAttach = "console.attach";
        /// <summary>Any state: liveness check.</summary>
        public const string Ping = "ping";

        public static readonly string[] All = [Describe, Status, Metrics, Pause, Resume, Stop, ConsoleAttach, Ping];
    }

    /// <summary>The <c>outcome</c> of a <c>stop</c> reply: why the VM ended the way it did.</summary>
    public static class StopOutcomes
    {
        /// <summary>The guest powered off after the ACPI power button was pressed.</summary>
        public const string PoweredOff = "PoweredOff";
        /// <summary>The power button was pressed but the guest did not power off within <c>timeout_ms</c>; stopped by force.</summary>
        public const string TimedOut = "TimedOut";
        /// <summary>The guest has not enabled ACPI power-button events (no ACPI OS); not pressed, stopped by force at once.</summary>
        public const string NoAcpi = "NoAcpi";
        /// <summary>The VM was paused, so the guest could not act on a button; stopped by force at once.</summary>
        public const string Paused = "Paused";
        /// <summary><c>graceful: false</c>: stopped by force as asked.</summary>
        public const string Forced = "Forced";
        /// <summary>The guest was not running (never started, between boots, already ended).</summary>
        public const string NotRunning = "NotRunning";
    }

    public static class ErrorCodes
    {
        public const string MalformedRequest = "MalformedRequest";
        public const string UnknownRequest = "UnknownRequest";
        public const string InvalidArgument = "InvalidArgument";
        public const string InvalidState = "InvalidState";
        public const string Timeout = "Timeout";
        public const string InternalError = "InternalError";
    }

    public const int MaxRequestBytes = 64 * 1024;
}

/// <summary>A request that cannot be carried out; becomes an error reply with <see cref="Code"/>.</summary>
public sealed class ControlRequestException(string code, string message) : Exception(message)
{
    public string Code { get; } = code;
}
