using System.Management.Automation;

namespace KvmPS.PowerShell.Internal;

/// <summary>
/// The job behind <c>-AsJob</c>: runs one management call on a background thread and collects its output and
/// errors in the job's streams (Receive-Job). Stop-Job only stops waiting: the management call itself is not
/// interrupted (it is bounded by its own timeouts) and its result is dropped.
/// </summary>
public sealed class KvmJob : Job
{
    private readonly Action<ICmdletOutput> _work;
    private readonly string _location;
    private volatile bool _stopRequested;

    internal KvmJob(string command, string name, Action<ICmdletOutput> work)
        : base(command, name)
    {
        _work = work;
        _location = Environment.MachineName;
        PSJobTypeName = "KvmJob";
    }

    public override string Location => _location;
    public override bool HasMoreData => Output.Count > 0 || Error.Count > 0 || Warning.Count > 0 || Verbose.Count > 0;
    public override string StatusMessage => JobStateInfo.State.ToString();

    internal void Start()
    {
        SetJobState(JobState.Running);
        var thread = new Thread(Run) { IsBackground = true, Name = "KvmJob " + Name };
        thread.Start();
    }

    public override void StopJob()
    {
        _stopRequested = true;
        SetJobState(JobState.Stopped);
    }

    private void Run()
    {
        var sink = new JobOutput(this);
        var failed = false;
        try
        {
            _work(sink);
            failed = sink.ErrorCount > 0;
        }
        catch (Exception e)
        {
            sink.WriteError(KvmErrorMapping.FromException(e, Name));
            failed = true;
        }
        if (!_stopRequested)
            SetJobState(failed ? JobState.Failed : JobState.Completed);
    }

    private sealed class JobOutput : ICmdletOutput
    {
        private readonly KvmJob _job;

        public JobOutput(KvmJob job) => _job = job;

        public int ErrorCount { get; private set; }

        public void WriteObject(object? value)
        {
            if (!_job._stopRequested)
                _job.Output.Add(new PSObject(value));
        }

        public void WriteError(KvmError error)
        {
            ErrorCount++;
            if (!_job._stopRequested)
                _job.Error.Add(error.ToErrorRecord());
        }

        public void WriteWarning(string message) => _job.Warning.Add(new WarningRecord(message));
        public void WriteVerbose(string message) => _job.Verbose.Add(new VerboseRecord(message));

        public void WriteProgress(string activity, string status, int percentComplete, bool completed) =>
            _job.Progress.Add(new ProgressRecord(1, activity, status)
            {
                PercentComplete = Math.Clamp(percentComplete, -1, 100),
                RecordType = completed ? ProgressRecordType.Completed : ProgressRecordType.Processing,
            });

        // Confirmation happened in the cmdlet before the job was created.
        public bool ShouldProcess(string target, string action) => true;
    }
}

/// <summary>Shared -AsJob plumbing.</summary>
internal static class KvmJobs
{
    /// <summary>Runs <paramref name="work"/> now, or as a job registered with the session when <paramref name="asJob"/>.</summary>
    public static void RunOrQueue(KvmCmdletBase cmdlet, bool asJob, string command, string vmName, Action<ICmdletOutput> work)
    {
        if (!asJob)
        {
            work(cmdlet.Output);
            return;
        }
        var job = new KvmJob(command, $"{command} {vmName}", work);
        cmdlet.JobRepository.Add(job);
        job.Start();
        cmdlet.Output.WriteObject(job);
    }
}
