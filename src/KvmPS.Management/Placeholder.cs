namespace KvmPS.Management; internal static class Placeholder {}
