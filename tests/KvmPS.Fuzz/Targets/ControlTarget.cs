using System.Buffers;
using System.Text;
using System.Text.Json;
using KvmPS.Contract;
using KvmPS.Vmm;

namespace KvmPS.Fuzz.Targets;

/// <summary>
/// The control protocol's request decoding, as <see cref="ControlServer"/> does it for one request line: JSON parse,
/// the id check, the duplicate-key and shape checks, the request record, then the reply line with the id echoed.
/// Expected: JsonException (malformed JSON) and ControlProtocolException / ArgumentException / InvalidOperationException
/// (the server turns those into error replies). An exception the server would report as InternalError is a finding.
/// </summary>
internal sealed class ControlTarget : IFuzzTarget
{
    public string Name => "control";
    public string Description => "control protocol request line (Vmm/ControlServer decoding, KvmPS.Contract records)";

    public void Run(ReadOnlySpan<byte> input)
    {
        if (input.Length > ControlRequests.MaxRequestBytes) input = input[..ControlRequests.MaxRequestBytes];
        JsonDocument doc;
        try { doc = JsonDocument.Parse(input.ToArray()); }
        catch (JsonException e) { _ = ControlServer.MalformedJson(e); return; }
        using (doc)
        {
            var root = doc.RootElement;
            JsonElement? id = ControlRequestChecks.Id(root, out string? idProblem);
            ControlProtocolException? error = null;
            try
            {
                if (idProblem is not null) throw new ControlProtocolException(ControlErrorCodes.MalformedRequest, idProblem);
                ControlRequestChecks.Check(root);
                var request = ControlRequests.Parse(root);
                // What management would have sent for this record must read back as the same request.
                using var again = JsonDocument.Parse(ControlRequests.Serialize(request));
                var reparsed = ControlRequests.Parse(again.RootElement);
                if (reparsed.Request != request.Request) throw new FuzzInvariantException($"'{request.Request}' serialised and read back as '{reparsed.Request}'");
            }
            catch (ControlProtocolException e) { error = e; }
            catch (ArgumentException e) { error = new ControlProtocolException(ControlErrorCodes.InvalidArgument, e.Message); }
            catch (InvalidOperationException e) { error = new ControlProtocolException(ControlErrorCodes.InvalidState, e.Message); }
            // The reply the server writes: with the id, or (what ControlServer.ReplyLine falls back to) without it.
            try { ReplyLine(id, error); }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException && id is not null) { ReplyLine(null, error); }
        }
    }

    private static void ReplyLine(JsonElement? id, ControlProtocolException? error)
    {
        var reply = error is null
            ? new ControlReply { Id = id, Ok = true }
            : new ControlReply { Id = id, Ok = false, Error = new ControlError(error.Code, error.Message) };
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
            JsonSerializer.Serialize(w, reply, ContractJsonContext.Default.ControlReply);
        // A reply must itself be one valid JSON line.
        using var check = JsonDocument.Parse(buffer.WrittenMemory);
    }

    public IEnumerable<(string, byte[])> Seeds()
    {
        string[] lines =
        [
            """{"id":1,"request":"ping"}""",
            """{"id":"a","request":"describe"}""",
            """{"request":"status"}""",
            """{"id":2,"request":"stop","timeout_ms":5000}""",
            """{"id":3,"request":"vcpu.set","count":2}""",
            """{"id":4,"request":"balloon.set","target_bytes":268435456}""",
            """{"id":5,"request":"memory.set","size_bytes":536870912}""",
            """{"id":6,"request":"device.add","device":{"type":"disk","path":"/var/lib/kvmps/a.qcow2","id":"d1"}}""",
            """{"id":7,"request":"device.remove","id":"d1"}""",
            """{"id":8,"request":"migrate","uri":"tcp:127.0.0.1:4444"}""",
            """{"id":9,"request":"snapshot.create","path":"/tmp/s"}""",
            """{"id":10,"request":"console.attach","replay":true}""",
            """{"request":"ping","request":"stop"}""",
            """{"id":"\ud800","request":"ping"}""",
            """{"id":[1,{"a":null}],"request":"net.stats"}""",
            """[1,2,3]""",
            """{"id":1,"request":"metrics","extra":1}""",
        ];
        int n = 0;
        foreach (var l in lines) yield return ($"seed-{n++:D2}.json", Encoding.UTF8.GetBytes(l));
        foreach (var name in ControlRequests.Names) yield return ($"req-{name}.json", Encoding.UTF8.GetBytes($$"""{"id":1,"request":"{{name}}"}"""));
    }
}
