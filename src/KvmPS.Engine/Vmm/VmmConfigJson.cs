using System.Text;
using KvmPS.Contract;

namespace KvmPS.Vmm;

/// <summary>
/// The configuration a VMM process was started with, as a snapshot's config.json: the wire contract's record (the
/// --config file with the flags applied on top). Per-process attachments (control socket, serial, debug console)
/// are left out: a restore gives its own.
/// </summary>
public static class VmmConfigJson
{
    public static string For(VmmConfiguration configuration) =>
        Encoding.UTF8.GetString(ContractJson.WriteConfiguration(configuration with { ControlSocket = null, Serial = null, Debugcon = null }));
}
