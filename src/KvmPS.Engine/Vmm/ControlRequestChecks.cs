using System.Text.Json;
using KvmPS.Contract;

namespace KvmPS.Vmm;

/// <summary>
/// Checks on a request's JSON before it is read into its record: what System.Text.Json lets through but the
/// protocol refuses (docs/vmm.md, "Control protocol").
/// </summary>
internal static class ControlRequestChecks
{
    /// <summary>
    /// Refuses a key given twice in any object (<c>{"request":"ping","request":"stop"}</c> must not mean stop: the
    /// reader would take the last) with <c>InvalidArgument</c> naming the key and where it is, and a key or string
    /// that is not valid text (an escaped lone surrogate) with <c>MalformedRequest</c>.
    /// </summary>
    public static void Check(JsonElement element, string path = "")
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in element.EnumerateObject())
                {
                    string name = Text(() => property.Name, path.Length == 0 ? "a key" : $"a key in {path}");
                    string at = path.Length == 0 ? name : $"{path}.{name}";
                    if (!seen.Add(name))
                        throw new ControlProtocolException(ControlErrorCodes.InvalidArgument, $"duplicate key '{at}': each key may appear once");
                    Check(property.Value, at);
                }
                break;
            case JsonValueKind.Array:
                int i = 0;
                foreach (var item in element.EnumerateArray()) Check(item, $"{path}[{i++}]");
                break;
            case JsonValueKind.String:
                Text(() => element.GetString()!, path.Length == 0 ? "the request" : $"'{path}'");
                break;
        }
    }

    /// <summary>
    /// The request's <c>id</c>, to echo in the reply: any JSON value whose strings are valid text; null when there is
    /// none or it cannot be echoed (then <paramref name="problem"/> says why, for a <c>MalformedRequest</c> reply).
    /// </summary>
    public static JsonElement? Id(JsonElement root, out string? problem)
    {
        problem = null;
        JsonElement id;
        try
        {
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("id", out id)) return null;
        }
        catch (InvalidOperationException)
        {
            // Finding "id" decodes the keys: one of them is not valid text.
            problem = "a key is not valid text (an escaped lone surrogate)";
            return null;
        }
        try { Check(id, "id"); }
        catch (ControlProtocolException e) { problem = e.Message; return null; }
        return id.Clone();
    }

    private static string Text(Func<string> decode, string what)
    {
        try { return decode(); }
        catch (InvalidOperationException)
        {
            throw new ControlProtocolException(ControlErrorCodes.MalformedRequest, $"{what} is not valid text (an escaped lone surrogate)");
        }
    }
}
