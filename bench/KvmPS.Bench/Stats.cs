namespace KvmPS.Bench;

/// <summary>min / median / max of one figure's runs.</summary>
public sealed record Stats(double Min, double Median, double Max, int Runs)
{
    public static Stats Of(IReadOnlyList<double> samples)
    {
        if (samples.Count == 0) throw new ArgumentException("no samples");
        var s = samples.OrderBy(x => x).ToArray();
        double median = s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
        return new Stats(s[0], median, s[^1], s.Length);
    }

    public string Format(string unit) => $"{Fmt(Min)} / {Fmt(Median)} / {Fmt(Max)} {unit}";
    private static string Fmt(double v) => v >= 100 ? v.ToString("F0") : v >= 10 ? v.ToString("F1") : v.ToString("F2");
}

/// <summary>One row of the table: a figure measured for KvmPS and its peer.</summary>
public sealed record FigureResult(string Id, string Title, string Unit, Stats? KvmPS, string PeerName, Stats? Peer, string Goal, string? Note = null)
{
    /// <summary>Median ratio KvmPS / peer.</summary>
    public double? Ratio => KvmPS is not null && Peer is not null && Peer.Median > 0 ? KvmPS.Median / Peer.Median : null;
}
