namespace KvmPS.Devices.Legacy;

/// <summary>
/// X11 keysyms (what RFB KeyEvents carry) to PC keys, each with its scan code in set 1 and set 2 and whether it has
/// the E0 prefix. A keysym names a symbol, not a key: shifted symbols ('A', '!') map to their unshifted key, and the
/// viewer sends the Shift keysym itself. Also the i8042's set 2 → set 1 translation (command byte bit 6), built from
/// the same table.
/// </summary>
public static class Ps2Keymap
{
    /// <summary>One PC key: set 1 make code, set 2 make code, E0-prefixed.</summary>
    public readonly record struct Key(byte Set1, byte Set2, bool Extended);

    private static readonly Dictionary<uint, Key> Keys = Build();
    private static readonly byte[] Translation = BuildTranslation();

    /// <summary>The key of <paramref name="keysym"/>, or null for a keysym without a PC key here.</summary>
    public static Key? Lookup(uint keysym)
    {
        if (keysym is >= 'A' and <= 'Z') keysym += 'a' - 'A';
        return Keys.TryGetValue(keysym, out var key) ? key : null;
    }

    /// <summary>
    /// The bytes a key sends in scan-code set <paramref name="set"/> (1 or 2): make (E0 xx / xx) or break (set 1:
    /// code | 0x80; set 2: F0 before the code, after E0).
    /// </summary>
    public static byte[] Codes(Key key, bool down, int set)
    {
        if (set == 1)
        {
            byte code = down ? key.Set1 : (byte)(key.Set1 | 0x80);
            return key.Extended ? [0xE0, code] : [code];
        }
        if (down) return key.Extended ? [0xE0, key.Set2] : [key.Set2];
        return key.Extended ? [0xE0, 0xF0, key.Set2] : [0xF0, key.Set2];
    }

    /// <summary>The controller's translation of a set 2 byte to set 1 (without the break bit: F0 is handled by the caller).</summary>
    public static byte TranslateToSet1(byte set2) => Translation[set2];

    private static byte[] BuildTranslation()
    {
        var t = new byte[256];
        for (int i = 0; i < 256; i++) t[i] = (byte)i; // bytes that are not key codes (FA, AA, EE, E0...) pass through
        var seen = new HashSet<byte>();
        foreach (var key in Keys.Values)
            if (seen.Add(key.Set2)) t[key.Set2] = key.Set1;
        // The identification byte 0x83 (F7's set 2 code) translates to 0x41 as well: atkbd reads AB 41 then.
        return t;
    }

    private static Dictionary<uint, Key> Build()
    {
        var k = new Dictionary<uint, Key>();
        void Add(uint keysym, byte set1, byte set2, bool extended = false) => k[keysym] = new Key(set1, set2, extended);
        void Both(char plain, char shifted, byte set1, byte set2) { Add(plain, set1, set2); Add(shifted, set1, set2); }

        // Main block, row by row.
        Add(0xff1b, 0x01, 0x76); // Escape
        Both('1', '!', 0x02, 0x16); Both('2', '@', 0x03, 0x1E); Both('3', '#', 0x04, 0x26); Both('4', '$', 0x05, 0x25);
        Both('5', '%', 0x06, 0x2E); Both('6', '^', 0x07, 0x36); Both('7', '&', 0x08, 0x3D); Both('8', '*', 0x09, 0x3E);
        Both('9', '(', 0x0A, 0x46); Both('0', ')', 0x0B, 0x45); Both('-', '_', 0x0C, 0x4E); Both('=', '+', 0x0D, 0x55);
        Add(0xff08, 0x0E, 0x66); // BackSpace
        Add(0xff09, 0x0F, 0x0D); Add(0xfe20, 0x0F, 0x0D); // Tab, ISO_Left_Tab (Shift+Tab)
        string top = "qwertyuiop", middle = "asdfghjkl", bottom = "zxcvbnm";
        byte[] top1 = [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19], top2 = [0x15, 0x1D, 0x24, 0x2D, 0x2C, 0x35, 0x3C, 0x43, 0x44, 0x4D];
        byte[] mid1 = [0x1E, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26], mid2 = [0x1C, 0x1B, 0x23, 0x2B, 0x34, 0x33, 0x3B, 0x42, 0x4B];
        byte[] bot1 = [0x2C, 0x2D, 0x2E, 0x2F, 0x30, 0x31, 0x32], bot2 = [0x1A, 0x22, 0x21, 0x2A, 0x32, 0x31, 0x3A];
        for (int i = 0; i < top.Length; i++) Add(top[i], top1[i], top2[i]);
        for (int i = 0; i < middle.Length; i++) Add(middle[i], mid1[i], mid2[i]);
        for (int i = 0; i < bottom.Length; i++) Add(bottom[i], bot1[i], bot2[i]);
        Both('[', '{', 0x1A, 0x54); Both(']', '}', 0x1B, 0x5B);
        Add(0xff0d, 0x1C, 0x5A); // Return
        Both(';', ':', 0x27, 0x4C); Both('\'', '"', 0x28, 0x52); Both('`', '~', 0x29, 0x0E); Both('\\', '|', 0x2B, 0x5D);
        Both(',', '<', 0x33, 0x41); Both('.', '>', 0x34, 0x49); Both('/', '?', 0x35, 0x4A);
        Add(' ', 0x39, 0x29);

        // Modifiers and locks.
        Add(0xffe1, 0x2A, 0x12); Add(0xffe2, 0x36, 0x59);             // Shift_L, Shift_R
        Add(0xffe3, 0x1D, 0x14); Add(0xffe4, 0x1D, 0x14, true);       // Control_L, Control_R
        Add(0xffe9, 0x38, 0x11); Add(0xffea, 0x38, 0x11, true);       // Alt_L, Alt_R
        Add(0xffe7, 0x38, 0x11); Add(0xffe8, 0x38, 0x11, true);       // Meta_L, Meta_R: as Alt
        Add(0xfe03, 0x38, 0x11, true);                                // ISO_Level3_Shift (AltGr)
        Add(0xffeb, 0x5B, 0x1F, true); Add(0xffec, 0x5C, 0x27, true); // Super_L, Super_R
        Add(0xff67, 0x5D, 0x2F, true);                                // Menu
        Add(0xffe5, 0x3A, 0x58); Add(0xff7f, 0x45, 0x77); Add(0xff14, 0x46, 0x7E); // Caps, Num, Scroll Lock

        // Function keys F1-F12.
        byte[] f1 = [0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x41, 0x42, 0x43, 0x44, 0x57, 0x58];
        byte[] f2 = [0x05, 0x06, 0x04, 0x0C, 0x03, 0x0B, 0x83, 0x0A, 0x01, 0x09, 0x78, 0x07];
        for (int i = 0; i < 12; i++) Add((uint)(0xffbe + i), f1[i], f2[i]);

        // The navigation block (E0-prefixed).
        Add(0xff50, 0x47, 0x6C, true); Add(0xff57, 0x4F, 0x69, true); // Home, End
        Add(0xff55, 0x49, 0x7D, true); Add(0xff56, 0x51, 0x7A, true); // Page_Up, Page_Down
        Add(0xff63, 0x52, 0x70, true); Add(0xffff, 0x53, 0x71, true); // Insert, Delete
        Add(0xff52, 0x48, 0x75, true); Add(0xff54, 0x50, 0x72, true); // Up, Down
        Add(0xff51, 0x4B, 0x6B, true); Add(0xff53, 0x4D, 0x74, true); // Left, Right

        // Keypad.
        byte[] kp1 = [0x52, 0x4F, 0x50, 0x51, 0x4B, 0x4C, 0x4D, 0x47, 0x48, 0x49], kp2 = [0x70, 0x69, 0x72, 0x7A, 0x6B, 0x73, 0x74, 0x6C, 0x75, 0x7D];
        for (int i = 0; i < 10; i++) Add((uint)(0xffb0 + i), kp1[i], kp2[i]);
        Add(0xffaa, 0x37, 0x7C); Add(0xffab, 0x4E, 0x79); Add(0xffad, 0x4A, 0x7B); Add(0xffae, 0x53, 0x71); // * + - .
        Add(0xffaf, 0x35, 0x4A, true); Add(0xff8d, 0x1C, 0x5A, true); // KP_Divide, KP_Enter
        return k;
    }
}
