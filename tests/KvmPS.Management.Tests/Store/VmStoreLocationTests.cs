using KvmPS.Management.Store;

namespace KvmPS.Management.Tests.Store;

public sealed class VmStoreLocationTests
{
    private static string Resolve(uint euid, params (string Name, string Value)[] environment) =>
        VmStoreLocation.ResolveDefaultRoot(name => environment.FirstOrDefault(e => e.Name == name).Value, euid);

    [Fact]
    public void Kvmps_home_wins() =>
        Assert.Equal("/srv/kvmps", Resolve(0, ("KVMPS_HOME", "/srv/kvmps"), ("HOME", "/root")));

    [Fact]
    public void Root_uses_var_lib() => Assert.Equal("/var/lib/kvmps", Resolve(0, ("HOME", "/root"), ("XDG_DATA_HOME", "/x")));

    [Fact]
    public void Users_use_xdg_data_home() =>
        Assert.Equal("/data/me/kvmps", Resolve(1000, ("HOME", "/home/me"), ("XDG_DATA_HOME", "/data/me")));

    [Fact]
    public void Users_fall_back_to_local_share() =>
        Assert.Equal("/home/me/.local/share/kvmps", Resolve(1000, ("HOME", "/home/me")));

    [Fact]
    public void Relative_xdg_data_home_is_ignored() =>
        Assert.Equal("/home/me/.local/share/kvmps", Resolve(1000, ("HOME", "/home/me"), ("XDG_DATA_HOME", "rel")));

    [Fact]
    public void No_home_at_all_is_an_error() => Assert.Throws<VmStoreException>(() => Resolve(1000));

    [Fact]
    public void Real_environment_resolves_to_an_absolute_path() =>
        Assert.True(Path.IsPathRooted(VmStoreLocation.ResolveDefaultRoot()));
}
