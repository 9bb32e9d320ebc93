namespace KvmPS.Storage; internal static class Placeholder {}
