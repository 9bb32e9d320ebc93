using Xunit.Abstractions;
using Xunit.Sdk;

namespace KvmPS.Engine.Tests.Support;

/// <summary>
/// Thrown by a test that found, while running, that this host cannot do what it checks (a known KVM limitation it
/// observed exactly). Tests whose fact attribute names <see cref="HostLimitationDiscoverer"/> report it as skipped with
/// the message; elsewhere it is an ordinary failure. xunit 2 has no skip from inside a test.
/// </summary>
public sealed class HostLimitationSkip(string reason) : Exception(reason);

/// <summary>Discovers facts as <see cref="HostLimitationTestCase"/>s (use on a FactAttribute subclass).</summary>
public sealed class HostLimitationDiscoverer(IMessageSink diagnostics) : IXunitTestCaseDiscoverer
{
    public IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions options, ITestMethod method, IAttributeInfo fact)
    {
        // (A static Skip on the attribute is honoured by XunitTestCase itself.)
        return [new HostLimitationTestCase(diagnostics, options.MethodDisplayOrDefault(), options.MethodDisplayOptionsOrDefault(), method)];
    }
}

/// <summary>A test case whose failure by <see cref="HostLimitationSkip"/> is reported as a skip with its reason.</summary>
public sealed class HostLimitationTestCase : XunitTestCase
{
    [Obsolete("Called by the de-serializer; should only be called by deriving classes for de-serialization purposes")]
    public HostLimitationTestCase() { }

    public HostLimitationTestCase(IMessageSink diagnostics, TestMethodDisplay display, TestMethodDisplayOptions displayOptions, ITestMethod method)
        : base(diagnostics, display, displayOptions, method) { }

    public override async Task<RunSummary> RunAsync(IMessageSink diagnostics, IMessageBus bus, object[] arguments, ExceptionAggregator aggregator, CancellationTokenSource cancellation)
    {
        var skipping = new SkippingBus(bus);
        var summary = await base.RunAsync(diagnostics, skipping, arguments, aggregator, cancellation);
        if (skipping.Skipped > 0)
        {
            summary.Failed -= skipping.Skipped;
            summary.Skipped += skipping.Skipped;
        }
        return summary;
    }

    private sealed class SkippingBus(IMessageBus inner) : IMessageBus
    {
        public int Skipped;

        public bool QueueMessage(IMessageSinkMessage message)
        {
            if (message is ITestFailed failed && failed.ExceptionTypes.FirstOrDefault() == typeof(HostLimitationSkip).FullName)
            {
                Skipped++;
                return inner.QueueMessage(new TestSkipped(failed.Test, failed.Messages.FirstOrDefault() ?? "host limitation"));
            }
            return inner.QueueMessage(message);
        }

        public void Dispose() { } // the inner bus belongs to the runner
    }
}
