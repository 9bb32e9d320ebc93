using System.Text.Json;
using System.Text.RegularExpressions;

namespace KvmPS.Cli.Tests;

/// <summary>
/// kvmps.dsc.resource.json against the rules of the published DSC v3 command-resource manifest schema
/// (PowerShell/DSC schemas/v3/resource/manifest*.json and definitions/*.json), checked here without network or
/// a JSON-schema library, and against what `kvmps dsc` actually implements.
/// </summary>
public sealed class DscResourceManifestTests
{
    // schemas/v3/resource/manifest.json: the canonical manifest URIs ($schema enum; the v3 and v3.0.x forms).
    private static readonly string[] ManifestSchemaUris = new[] { "v3", "v3.0", "v3.0.0", "v3.0.1", "v3.0.2", "v3.1", "v3.1.0" }
        .SelectMany(v => new[] { "https://raw.githubusercontent.com/PowerShell/DSC/main/schemas", "https://aka.ms/dsc/schemas" }
            .SelectMany(host => new[] { $"{host}/{v}/resource/manifest.json", $"{host}/{v}/bundled/resource/manifest.json", $"{host}/{v}/bundled/resource/manifest.vscode.json" }))
        .ToArray();

    private static readonly string[] RootKeys =
    {
        "$schema", "type", "version", "description", "kind", "tags", "get", "set", "whatIf", "test", "delete", "export",
        "validate", "resolve", "adapter", "exitCodes", "schema",
    };

    private static readonly Dictionary<string, string[]> MethodKeys = new()
    {
        ["get"] = new[] { "executable", "args", "input" },
        ["set"] = new[] { "executable", "args", "input", "implementsPretest", "handlesExist", "return" },
        ["test"] = new[] { "executable", "args", "input", "return" },
    };

    private static readonly string[] InstanceSchemaDialects =
    {
        "https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2019-09/schema", "http://json-schema.org/draft-07/schema#",
    };

    private static JsonElement Manifest() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "kvmps.dsc.resource.json"))).RootElement.Clone();

    /// <summary>Every violation of the schema rules, as "path: problem" (empty when valid).</summary>
    internal static List<string> Validate(JsonElement m)
    {
        var errors = new List<string>();
        void Check(bool ok, string message)
        {
            if (!ok) errors.Add(message);
        }
        bool IsString(JsonElement e, string name, out string value)
        {
            value = e.ValueKind == JsonValueKind.String ? e.GetString()! : "";
            if (e.ValueKind != JsonValueKind.String) errors.Add($"{name}: must be a string, not {e.ValueKind}");
            return e.ValueKind == JsonValueKind.String;
        }

        if (m.ValueKind != JsonValueKind.Object)
            return new List<string> { "$: the manifest must be an object" };
        foreach (var property in m.EnumerateObject())
            Check(RootKeys.Contains(property.Name), $"$.{property.Name}: not a manifest property");
        foreach (var required in new[] { "$schema", "type", "version" })
            Check(m.TryGetProperty(required, out _), $"$.{required}: required");

        if (m.TryGetProperty("$schema", out var schemaUri) && IsString(schemaUri, "$.$schema", out var uri))
            Check(ManifestSchemaUris.Contains(uri), $"$.$schema: '{uri}' is not a canonical DSC v3 resource manifest schema URI");
        if (m.TryGetProperty("type", out var type) && IsString(type, "$.type", out var typeName))
            Check(Regex.IsMatch(typeName, @"^\w+(\.\w+){0,3}/\w+$"), $"$.type: '{typeName}' is not owner[.group][.area]/name");
        if (m.TryGetProperty("version", out var version) && IsString(version, "$.version", out var semver))
            Check(Regex.IsMatch(semver, @"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"),
                $"$.version: '{semver}' is not a semantic version");
        if (m.TryGetProperty("description", out var description))
            IsString(description, "$.description", out _);
        var kind = "resource";
        if (m.TryGetProperty("kind", out var kindElement) && IsString(kindElement, "$.kind", out kind))
            Check(kind is "resource" or "adapter" or "group" or "importer" or "exporter", $"$.kind: '{kind}' is not a resource kind");
        if (m.TryGetProperty("tags", out var tags))
        {
            if (tags.ValueKind != JsonValueKind.Array)
                errors.Add("$.tags: must be an array");
            else
            {
                var seen = new HashSet<string>();
                foreach (var tag in tags.EnumerateArray())
                    if (IsString(tag, "$.tags[]", out var text))
                    {
                        Check(Regex.IsMatch(text, @"^\w+$"), $"$.tags: '{text}' must be word characters only");
                        Check(seen.Add(text), $"$.tags: '{text}' is listed twice");
                    }
            }
        }
        // allOf: adapters need 'adapter'; importers need 'resolve'; everything else needs 'get'.
        Check(kind != "adapter" || m.TryGetProperty("adapter", out _), "$.adapter: required for kind adapter");
        Check(kind == "importer" ? m.TryGetProperty("resolve", out _) : m.TryGetProperty("get", out _), kind == "importer" ? "$.resolve: required" : "$.get: required");

        foreach (var (name, keys) in MethodKeys)
        {
            if (!m.TryGetProperty(name, out var method))
                continue;
            var at = "$." + name;
            if (method.ValueKind != JsonValueKind.Object)
            {
                errors.Add($"{at}: must be an object");
                continue;
            }
            foreach (var property in method.EnumerateObject())
                Check(keys.Contains(property.Name), $"{at}.{property.Name}: not a property of the {name} method");
            if (!method.TryGetProperty("executable", out var executable))
                errors.Add($"{at}.executable: required");
            else if (IsString(executable, at + ".executable", out var exe))
                Check(exe.Length > 0, $"{at}.executable: must not be empty");
            var jsonInputArgs = 0;
            if (method.TryGetProperty("args", out var args))
            {
                if (args.ValueKind != JsonValueKind.Array)
                    errors.Add($"{at}.args: must be an array");
                else
                    foreach (var arg in args.EnumerateArray())
                    {
                        if (arg.ValueKind == JsonValueKind.String)
                            continue;
                        if (arg.ValueKind != JsonValueKind.Object)
                        {
                            errors.Add($"{at}.args: items are strings or a jsonInputArg object, not {arg.ValueKind}");
                            continue;
                        }
                        jsonInputArgs++;
                        Check(arg.TryGetProperty("jsonInputArg", out var a) && a.ValueKind == JsonValueKind.String, $"{at}.args: jsonInputArg (a string) is required");
                        foreach (var p in arg.EnumerateObject())
                            Check(p.Name is "jsonInputArg" or "mandatory", $"{at}.args: '{p.Name}' is not allowed in a jsonInputArg object");
                        if (arg.TryGetProperty("mandatory", out var mandatory))
                            Check(mandatory.ValueKind is JsonValueKind.True or JsonValueKind.False, $"{at}.args: mandatory must be a boolean");
                    }
            }
            var hasInput = method.TryGetProperty("input", out var input);
            if (hasInput && IsString(input, at + ".input", out var inputKind))
                Check(inputKind is "env" or "stdin", $"{at}.input: '{inputKind}' is not env or stdin");
            // oneOf: input without a jsonInputArg, or exactly one jsonInputArg (with or without input).
            Check(jsonInputArgs <= 1, $"{at}.args: at most one jsonInputArg");
            Check(hasInput || jsonInputArgs == 1, $"{at}: needs 'input' or one jsonInputArg in args, or DSC passes no instance");
            if (method.TryGetProperty("return", out var ret) && IsString(ret, at + ".return", out var returnKind))
                Check(returnKind is "state" or "stateAndDiff", $"{at}.return: '{returnKind}' is not state or stateAndDiff");
            foreach (var flag in new[] { "implementsPretest", "handlesExist" })
                if (method.TryGetProperty(flag, out var value))
                    Check(value.ValueKind is JsonValueKind.True or JsonValueKind.False, $"{at}.{flag}: must be a boolean");
        }

        if (m.TryGetProperty("exitCodes", out var exitCodes))
        {
            if (exitCodes.ValueKind != JsonValueKind.Object)
                errors.Add("$.exitCodes: must be an object");
            else
                foreach (var code in exitCodes.EnumerateObject())
                {
                    Check(Regex.IsMatch(code.Name, @"^-?[0-9]+$"), $"$.exitCodes: key '{code.Name}' is not an integer");
                    IsString(code.Value, $"$.exitCodes.{code.Name}", out _);
                }
        }

        if (!m.TryGetProperty("schema", out var schema))
            return errors;
        if (schema.ValueKind != JsonValueKind.Object)
            return errors.Append("$.schema: must be an object").ToList();
        var hasCommand = schema.TryGetProperty("command", out _);
        var hasEmbedded = schema.TryGetProperty("embedded", out var embedded);
        Check(hasCommand != hasEmbedded, "$.schema: exactly one of command and embedded");
        if (!hasEmbedded)
            return errors;
        if (embedded.ValueKind != JsonValueKind.Object)
            return errors.Append("$.schema.embedded: must be an object").ToList();
        Check(embedded.TryGetProperty("$schema", out var dialect) && dialect.ValueKind == JsonValueKind.String && InstanceSchemaDialects.Contains(dialect.GetString()),
            "$.schema.embedded.$schema: must be the 2020-12, 2019-09 or draft-07 JSON Schema dialect");
        Check(embedded.TryGetProperty("type", out var instanceType) && instanceType.ValueKind == JsonValueKind.String && instanceType.GetString() == "object",
            "$.schema.embedded.type: must be 'object'");
        if (!embedded.TryGetProperty("properties", out var properties) || properties.ValueKind != JsonValueKind.Object || !properties.EnumerateObject().Any())
            return errors.Append("$.schema.embedded.properties: an object with at least one property is required").ToList();
        foreach (var property in properties.EnumerateObject())
        {
            if (!property.Name.StartsWith('_'))
                continue;
            // Canonical properties are given only as a $ref to their published schema.
            var expected = property.Name switch
            {
                "_exist" => "exist", "_inDesiredState" => "inDesiredState", "_purge" => "purge", "_rebootRequested" => "rebootRequested", _ => null,
            };
            if (expected is null)
                continue;
            var refs = new[] { "v3", "v3.0", "v3.0.0", "v3.0.1", "v3.0.2", "v3.1", "v3.1.0" }
                .SelectMany(v => new[] { $"https://aka.ms/dsc/schemas/{v}/resource/properties/{expected}.json", $"https://raw.githubusercontent.com/PowerShell/DSC/main/schemas/{v}/resource/properties/{expected}.json" });
            Check(property.Value.ValueKind == JsonValueKind.Object && property.Value.EnumerateObject().Count() == 1
                  && property.Value.TryGetProperty("$ref", out var r) && refs.Contains(r.GetString()),
                $"$.schema.embedded.properties.{property.Name}: must be only a $ref to the canonical {expected}.json");
        }
        // A resource that implements test must return _inDesiredState, and so declare it.
        if (m.TryGetProperty("test", out _))
            Check(properties.TryGetProperty("_inDesiredState", out _), "$.schema.embedded.properties._inDesiredState: required when the manifest defines test");
        return errors;
    }

    [Fact]
    public void The_shipped_manifest_follows_the_DSC_v3_manifest_schema()
    {
        Assert.Empty(Validate(Manifest()));
    }

    [Theory]
    [InlineData("""{"type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"}}""", "$.$schema: required")]
    [InlineData("""{"$schema":"https://example.com/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"}}""", "not a canonical")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"KvmPS-VirtualMachine","version":"1.0.0","get":{"executable":"x","input":"stdin"}}""", "$.type")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0","get":{"executable":"x","input":"stdin"}}""", "semantic version")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0"}""", "$.get: required")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x"}}""", "needs 'input'")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"pipe"}}""", "not env or stdin")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"},"set":{"executable":"x","input":"stdin","implementsPreTest":true}}""", "implementsPreTest: not a property")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"},"test":{"executable":"x","input":"stdin","return":"diff"}}""", "not state or stateAndDiff")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"},"exitCodes":{"ok":"Success"}}""", "not an integer")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"},"tags":["Linux KVM"]}""", "word characters")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"},"test":{"executable":"x","input":"stdin"},"schema":{"embedded":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"a":{}}}}}""", "_inDesiredState: required")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"},"schema":{"embedded":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"_inDesiredState":{"type":"boolean"}}}}}""", "only a $ref")]
    [InlineData("""{"$schema":"https://aka.ms/dsc/schemas/v3/bundled/resource/manifest.json","type":"A/B","version":"1.0.0","get":{"executable":"x","input":"stdin"},"schema":{"embedded":{"type":"object","properties":{"a":{}}}}}""", "dialect")]
    public void The_checks_reject_what_the_schema_rejects(string manifest, string expected)
    {
        var errors = Validate(JsonDocument.Parse(manifest).RootElement);
        Assert.Contains(errors, e => e.Contains(expected, StringComparison.Ordinal));
    }

    [Fact]
    public void The_manifest_matches_what_kvmps_dsc_implements()
    {
        var m = Manifest();
        Assert.Equal(DscCommand.ResourceType, m.GetProperty("type").GetString());
        Assert.Equal(CliApp.Version, m.GetProperty("version").GetString());
        foreach (var op in new[] { "get", "set", "test" })
        {
            var method = m.GetProperty(op);
            Assert.Equal("kvmps", method.GetProperty("executable").GetString());
            Assert.Equal(new[] { "dsc", op }, method.GetProperty("args").EnumerateArray().Select(a => a.GetString()));
            Assert.Equal("stdin", method.GetProperty("input").GetString());
        }
        // test and set print state and diff (two lines): DscCommand.Test/Set.
        Assert.Equal("stateAndDiff", m.GetProperty("test").GetProperty("return").GetString());
        Assert.Equal("stateAndDiff", m.GetProperty("set").GetProperty("return").GetString());
        // set plans against the host itself (Reconciler), so DSC need not test first.
        Assert.True(m.GetProperty("set").GetProperty("implementsPretest").GetBoolean());
        Assert.False(m.TryGetProperty("export", out _), "no 'kvmps dsc export' exists");

        // The exit codes dsc can see are the CLI's, with 0 as success.
        var codes = m.GetProperty("exitCodes").EnumerateObject().ToDictionary(p => int.Parse(p.Name, System.Globalization.CultureInfo.InvariantCulture), p => p.Value.GetString());
        Assert.Equal(new[] { ExitCodes.Ok, ExitCodes.Usage, ExitCodes.ManifestError, ExitCodes.OperationFailed, ExitCodes.VmNotFound, ExitCodes.Environment }, codes.Keys.Order());
        Assert.Equal("Success", codes[0]);

        // The instance schema has exactly the properties kvmps dsc accepts and returns.
        var properties = m.GetProperty("schema").GetProperty("embedded").GetProperty("properties").EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal);
        var implemented = DscCommand.Properties.Select(p => p.Dsc).Concat(DscCommand.ReadOnlyProperties).Append("_inDesiredState").Order(StringComparer.Ordinal);
        Assert.Equal(implemented, properties);
        var readOnly = m.GetProperty("schema").GetProperty("embedded").GetProperty("properties").EnumerateObject()
            .Where(p => p.Value.TryGetProperty("readOnly", out var r) && r.GetBoolean()).Select(p => p.Name).Order(StringComparer.Ordinal);
        Assert.Equal(DscCommand.ReadOnlyProperties.Order(StringComparer.Ordinal), readOnly);

        // DSC validates an instance against the schema before it runs kvmps: the schema states the limits the
        // definition enforces, so a bad value is rejected up front rather than by exit status 3.
        var schema = m.GetProperty("schema").GetProperty("embedded").GetProperty("properties");
        foreach (var memory in new[] { "StartupMemory", "MinimumMemory", "MaximumMemory" })
        {
            Assert.Equal(KvmPS.Management.Definitions.VmDefinition.PageBytes, schema.GetProperty(memory).GetProperty("multipleOf").GetInt64());
            Assert.Equal(KvmPS.Management.Definitions.VmDefinition.PageBytes, schema.GetProperty(memory).GetProperty("minimum").GetInt64());
        }
        foreach (var vcpus in new[] { "ProcessorCount", "MaximumProcessorCount" })
            Assert.Equal(KvmPS.Management.Definitions.VcpuSettings.Limit, schema.GetProperty(vcpus).GetProperty("maximum").GetInt32());
        // JSON Schema patterns are ECMA-262 regexes, where a final '$' (not multiline) matches only at the end of the
        // input: .NET's '\z'. .NET's own '$' also matches before a final newline, so translate it.
        var ecmaPattern = schema.GetProperty("Name").GetProperty("pattern").GetString()!;
        Assert.EndsWith("$", ecmaPattern);
        var namePattern = new Regex(ecmaPattern[..^1] + @"\z", RegexOptions.ECMAScript);
        foreach (var name in new[] { "web1", "a", "x.y_z-1", new string('a', 63), "", "-a", "a b", new string('a', 64), "a/b", "vm1\n" })
            Assert.Equal(KvmPS.Management.Definitions.VmName.IsValid(name), namePattern.IsMatch(name));
    }
}
