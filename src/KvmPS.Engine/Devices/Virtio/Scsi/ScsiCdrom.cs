using System.Buffers.Binary;

namespace KvmPS.Devices.Virtio.Scsi;

/// <summary>SCSI status, sense keys and the additional sense codes the drive reports (SPC-4, MMC-6).</summary>
public static class Scsi
{
    public const byte StatusGood = 0x00, StatusCheckCondition = 0x02;
    public const byte KeyNoSense = 0x0, KeyNotReady = 0x2, KeyMediumError = 0x3, KeyIllegalRequest = 0x5, KeyUnitAttention = 0x6;
    // (ASC << 8) | ASCQ
    public const ushort AscNone = 0x0000, AscUnrecoveredReadError = 0x1100, AscInvalidOpcode = 0x2000, AscLbaOutOfRange = 0x2100,
        AscInvalidFieldInCdb = 0x2400, AscMediumChanged = 0x2800, AscSavingNotSupported = 0x3900, AscMediumNotPresent = 0x3A00,
        AscMediumNotPresentTrayOpen = 0x3A02, AscMediumRemovalPrevented = 0x5302;
    public const int FixedSenseBytes = 18;

    // Operation codes.
    public const byte TestUnitReady = 0x00, RequestSense = 0x03, Inquiry = 0x12, ModeSense6 = 0x1A, StartStopUnit = 0x1B,
        PreventAllowMediumRemoval = 0x1E, ReadCapacity10 = 0x25, Read10 = 0x28, ReadToc = 0x43, GetConfiguration = 0x46,
        GetEventStatusNotification = 0x4A, ReadDiscInformation = 0x51, ModeSense10 = 0x5A, ReportLuns = 0xA0, Read12 = 0xA8,
        MechanismStatus = 0xBD;

    /// <summary>Fixed-format sense data (response code 0x70, current error).</summary>
    public static void WriteFixedSense(Span<byte> sense, byte key, ushort asc)
    {
        sense[..FixedSenseBytes].Clear();
        sense[0] = 0x70;
        sense[2] = key;
        sense[7] = FixedSenseBytes - 8; // additional sense length
        sense[12] = (byte)(asc >> 8);
        sense[13] = (byte)asc;
    }
}

/// <summary>MMC media event codes (GET EVENT STATUS NOTIFICATION, media class).</summary>
public enum MediaEvent : byte { None = 0, EjectRequest = 1, NewMedia = 2, MediaRemoval = 3 }

/// <summary>
/// The CD-ROM logical unit (target 0, LUN 0): the SCSI primary and MMC commands SeaBIOS (blockcmd.c, cdrom.c) and
/// Linux's sr driver issue, on an <see cref="IsoImage"/> in 2048-byte blocks. Holds the drive's state: the medium,
/// the tray (open after a guest eject), the guest's lock (PREVENT ALLOW MEDIUM REMOVAL), a pending unit attention
/// (medium changed, reported once) and a pending media event. Not thread-safe: the owner serializes calls.
/// </summary>
public sealed class ScsiCdrom : IDisposable
{
    /// <summary>Largest non-READ response (allocation lengths are 16-bit in the commands answered here).</summary>
    public const int MaxResponseBytes = 0xFFFF;
    /// <summary>Images larger than a CD (about 700 MiB) present the DVD-ROM profile, smaller ones CD-ROM.</summary>
    public const uint MaxCdBlocks = 360_000;
    public const ushort ProfileCdRom = 0x0008, ProfileDvdRom = 0x0010;
    public const string Vendor = "KvmPS", Product = "CD/DVD-ROM", Revision = "1.0";

    private readonly byte[] _sense = new byte[Scsi.FixedSenseBytes];

    public ScsiCdrom(IsoImage? image, string serial = "KVMPS-CD0")
    {
        Image = image;
        Serial = serial;
    }

    /// <summary>The image in the drive (kept while the guest has the tray open), or null.</summary>
    public IsoImage? Image { get; private set; }
    /// <summary>The guest opened the tray (START STOP UNIT eject); the image stays in it until a load or a change.</summary>
    public bool TrayOpen { get; private set; }
    /// <summary>PREVENT ALLOW MEDIUM REMOVAL: the guest holds the tray locked.</summary>
    public bool Locked { get; private set; }
    /// <summary>A unit attention (ASC/ASCQ) the next command other than INQUIRY, REQUEST SENSE, REPORT LUNS, GET CONFIGURATION and GET EVENT STATUS NOTIFICATION reports.</summary>
    public ushort PendingUnitAttention { get; private set; }
    public MediaEvent PendingMediaEvent { get; private set; }
    public string Serial { get; }
    public bool MediumPresent => Image is not null && !TrayOpen;
    /// <summary>Sense data of the last CHECK CONDITION (what goes into the virtio-scsi response).</summary>
    public ReadOnlySpan<byte> Sense => _sense;

    /// <summary>Inserts (or with null removes) a medium from the host: the tray closes, the guest gets unit attention 28/00 and a media event.</summary>
    public IsoImage? ChangeMedium(IsoImage? image)
    {
        var old = Image;
        Image = image;
        TrayOpen = false;
        if (image is not null)
        {
            PendingUnitAttention = Scsi.AscMediumChanged;
            PendingMediaEvent = MediaEvent.NewMedia;
        }
        else
        {
            PendingUnitAttention = 0; // TEST UNIT READY now reports NOT READY / medium not present
            PendingMediaEvent = MediaEvent.MediaRemoval;
        }
        return ReferenceEquals(old, image) ? null : old;
    }

    /// <summary>The host asked to eject while the guest holds the lock: the guest sees an eject request (Linux then unlocks and ejects if nothing is mounted).</summary>
    public void RequestEject() => PendingMediaEvent = MediaEvent.EjectRequest;

    /// <summary>Sets the drive's state from a snapshot (the image already open).</summary>
    public void Restore(IsoImage? image, bool trayOpen, bool locked, ushort unitAttention, MediaEvent mediaEvent)
    {
        Image = image;
        (TrayOpen, Locked, PendingUnitAttention, PendingMediaEvent) = (trayOpen, locked, unitAttention, mediaEvent);
    }

    /// <summary>
    /// Runs one command. Non-READ data goes into <paramref name="data"/> (at least <see cref="MaxResponseBytes"/>
    /// long): <paramref name="length"/> bytes of it, already cut to the CDB's allocation length. READ(10/12) only
    /// checks the request and returns the byte range in <paramref name="read"/> for the caller to transfer (straight
    /// into guest memory) with <see cref="ReadMedium"/>. CHECK CONDITION leaves the sense in <see cref="Sense"/>.
    /// </summary>
    public byte Execute(ReadOnlySpan<byte> cdb, Span<byte> data, out int length, out (long Offset, long Bytes) read)
    {
        length = 0;
        read = default;
        if (cdb.Length < 6) return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidOpcode);
        byte op = cdb[0];
        bool uaExempt = op is Scsi.Inquiry or Scsi.RequestSense or Scsi.ReportLuns or Scsi.GetConfiguration or Scsi.GetEventStatusNotification;
        if (PendingUnitAttention != 0 && !uaExempt && IsKnown(op))
        {
            ushort ua = PendingUnitAttention;
            PendingUnitAttention = 0; // reported with the response's sense: once
            return Check(Scsi.KeyUnitAttention, ua);
        }
        switch (op)
        {
            case Scsi.TestUnitReady:
                return RequireMedium() ?? Good();
            case Scsi.RequestSense:
                return RequestSense(cdb, data, out length);
            case Scsi.Inquiry:
                return Inquiry(cdb, data, out length);
            case Scsi.ReadCapacity10:
                if (RequireMedium() is { } rc) return rc;
                BinaryPrimitives.WriteUInt32BigEndian(data, Image!.Blocks == 0 ? 0 : Image.Blocks - 1);
                BinaryPrimitives.WriteUInt32BigEndian(data[4..], IsoImage.BlockSize);
                length = 8;
                return Good();
            case Scsi.Read10 when cdb.Length >= 10:
                return Read(BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]), out read);
            case Scsi.Read12 when cdb.Length >= 12:
                return Read(BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]), BinaryPrimitives.ReadUInt32BigEndian(cdb[6..]), out read);
            case Scsi.ModeSense6:
                return ModeSense(cdb, data, out length, ten: false);
            case Scsi.ModeSense10 when cdb.Length >= 10:
                return ModeSense(cdb, data, out length, ten: true);
            case Scsi.GetConfiguration when cdb.Length >= 10:
                return GetConfiguration(cdb, data, out length);
            case Scsi.ReadToc when cdb.Length >= 10:
                return ReadToc(cdb, data, out length);
            case Scsi.GetEventStatusNotification when cdb.Length >= 10:
                return GetEventStatus(cdb, data, out length);
            case Scsi.StartStopUnit:
                return StartStop(cdb);
            case Scsi.PreventAllowMediumRemoval:
                Locked = (cdb[4] & 1) != 0;
                return Good();
            case Scsi.ReportLuns when cdb.Length >= 12:
                if (BinaryPrimitives.ReadUInt32BigEndian(cdb[6..]) < 16) return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb);
                data[..16].Clear();
                BinaryPrimitives.WriteUInt32BigEndian(data, 8); // one LUN: 0
                return Done(BinaryPrimitives.ReadUInt32BigEndian(cdb[6..]), 16, out length);
            case Scsi.ReadDiscInformation when cdb.Length >= 10:
                return ReadDiscInformation(cdb, data, out length);
            case Scsi.MechanismStatus when cdb.Length >= 12:
                data[..8].Clear();
                if (TrayOpen || Image is null) data[1] = 0x10; // door open
                return Done(BinaryPrimitives.ReadUInt16BigEndian(cdb[8..]), 8, out length);
            default:
                return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidOpcode);
        }
    }

    private static bool IsKnown(byte op) => op is Scsi.TestUnitReady or Scsi.ReadCapacity10 or Scsi.Read10 or Scsi.Read12 or Scsi.ModeSense6
        or Scsi.ModeSense10 or Scsi.ReadToc or Scsi.StartStopUnit or Scsi.PreventAllowMediumRemoval or Scsi.ReadDiscInformation or Scsi.MechanismStatus;

    /// <summary>Copies image bytes for a READ that <see cref="Execute"/> accepted; false (sense MEDIUM ERROR set) on a host I/O error.</summary>
    public bool ReadMedium(long offset, Span<byte> destination)
    {
        try
        {
            if (Image is null) { Check(Scsi.KeyNotReady, Scsi.AscMediumNotPresent); return false; }
            Image.Read(offset, destination);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            Check(Scsi.KeyMediumError, Scsi.AscUnrecoveredReadError);
            return false;
        }
    }

    private byte Good()
    {
        _sense.AsSpan().Clear();
        return Scsi.StatusGood;
    }

    private byte Check(byte key, ushort asc)
    {
        Scsi.WriteFixedSense(_sense, key, asc);
        return Scsi.StatusCheckCondition;
    }

    private byte Done(uint allocation, int produced, out int length)
    {
        length = (int)Math.Min(allocation, (uint)produced);
        return Good();
    }

    private byte? RequireMedium() => MediumPresent ? null
        : Check(Scsi.KeyNotReady, TrayOpen ? Scsi.AscMediumNotPresentTrayOpen : Scsi.AscMediumNotPresent);

    private byte RequestSense(ReadOnlySpan<byte> cdb, Span<byte> data, out int length)
    {
        // The current condition: a pending unit attention (reported and cleared), no medium, or nothing.
        if (PendingUnitAttention != 0) { Scsi.WriteFixedSense(data, Scsi.KeyUnitAttention, PendingUnitAttention); PendingUnitAttention = 0; }
        else if (!MediumPresent) Scsi.WriteFixedSense(data, Scsi.KeyNotReady, TrayOpen ? Scsi.AscMediumNotPresentTrayOpen : Scsi.AscMediumNotPresent);
        else Scsi.WriteFixedSense(data, Scsi.KeyNoSense, Scsi.AscNone);
        return Done(cdb[4], Scsi.FixedSenseBytes, out length);
    }

    private byte Inquiry(ReadOnlySpan<byte> cdb, Span<byte> data, out int length)
    {
        length = 0;
        uint allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[3..]);
        bool evpd = (cdb[1] & 1) != 0;
        byte page = cdb[2];
        if (!evpd)
        {
            if (page != 0) return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb);
            data[..36].Clear();
            data[0] = 0x05;   // peripheral device type: CD/DVD
            data[1] = 0x80;   // RMB: removable medium
            data[2] = 0x05;   // SPC-3
            data[3] = 0x02;   // response data format 2
            data[4] = 36 - 5; // additional length
            Ascii(data[8..16], Vendor);
            Ascii(data[16..32], Product);
            Ascii(data[32..36], Revision);
            return Done(allocation, 36, out length);
        }
        data[..4].Clear();
        data[0] = 0x05;
        data[1] = page;
        int n;
        switch (page)
        {
            case 0x00: // supported VPD pages
                data[4] = 0x00; data[5] = 0x80; data[6] = 0x83;
                n = 3;
                break;
            case 0x80: // unit serial number
                n = Serial.Length;
                Ascii(data.Slice(4, n), Serial);
                break;
            case 0x83: // device identification: one T10 vendor ID designator (vendor + serial)
                string id = Vendor.PadRight(8) + Serial;
                data[4] = 0x02;          // code set: ASCII
                data[5] = 0x01;          // association: LUN, designator type: T10 vendor ID
                data[6] = 0;
                data[7] = (byte)id.Length;
                Ascii(data.Slice(8, id.Length), id);
                n = 4 + id.Length;
                break;
            default:
                return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb);
        }
        BinaryPrimitives.WriteUInt16BigEndian(data[2..], (ushort)n);
        return Done(allocation, 4 + n, out length);
    }

    private static void Ascii(Span<byte> field, string text)
    {
        field.Fill((byte)' ');
        for (int i = 0; i < text.Length && i < field.Length; i++) field[i] = (byte)text[i];
    }

    private byte Read(uint lba, uint blocks, out (long Offset, long Bytes) read)
    {
        read = default;
        if (RequireMedium() is { } r) return r;
        if ((ulong)lba + blocks > Image!.Blocks) return Check(Scsi.KeyIllegalRequest, Scsi.AscLbaOutOfRange);
        read = ((long)lba * IsoImage.BlockSize, (long)blocks * IsoImage.BlockSize);
        return Good();
    }

    private byte ModeSense(ReadOnlySpan<byte> cdb, Span<byte> data, out int length, bool ten)
    {
        length = 0;
        int pageControl = cdb[2] >> 6, page = cdb[2] & 0x3F;
        if (pageControl == 3) return Check(Scsi.KeyIllegalRequest, Scsi.AscSavingNotSupported);
        if (page is not (0x01 or 0x2A or 0x3F)) return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb);
        bool changeable = pageControl == 1;
        int header = ten ? 8 : 4;
        data[..(header + 12 + 22)].Clear();
        int at = header;
        if (page is 0x01 or 0x3F)
        {
            // Read/write error recovery: nothing to recover on an image; all parameters 0.
            data[at] = 0x01; data[at + 1] = 10;
            at += 12;
        }
        if (page is 0x2A or 0x3F)
        {
            // MM capabilities and mechanical status (MMC-3): what sr's get_capabilities reads.
            var p = data.Slice(at, 22);
            p[0] = 0x2A; p[1] = 20;
            if (!changeable)
            {
                p[2] = 0x0B;                         // reads CD-R, CD-RW, DVD-ROM
                p[3] = 0x00;                         // writes nothing
                p[4] = 0x71;                         // audio play, mode 2 form 1 and 2, multi-session
                p[6] = (byte)(0x29 | (Locked ? 0x02 : 0)); // tray loader, eject, lock (and its state)
                BinaryPrimitives.WriteUInt16BigEndian(p[8..], 706);   // max read speed, kB/s (4x)
                BinaryPrimitives.WriteUInt16BigEndian(p[10..], 256);  // volume levels
                BinaryPrimitives.WriteUInt16BigEndian(p[12..], 2048); // buffer, KiB
                BinaryPrimitives.WriteUInt16BigEndian(p[14..], 706);  // current read speed
            }
            at += 22;
        }
        byte mediumType = MediumPresent ? (byte)0x01 : (byte)0x70; // 120 mm data disc / door closed, no disc
        if (ten)
        {
            BinaryPrimitives.WriteUInt16BigEndian(data, (ushort)(at - 2));
            data[2] = mediumType;
            return Done(BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]), at, out length);
        }
        data[0] = (byte)(at - 1);
        data[1] = mediumType;
        return Done(cdb[4], at, out length);
    }

    private ushort CurrentProfile => !MediumPresent ? (ushort)0 : Image!.Blocks > MaxCdBlocks ? ProfileDvdRom : ProfileCdRom;

    private byte GetConfiguration(ReadOnlySpan<byte> cdb, Span<byte> data, out int length)
    {
        int rt = cdb[1] & 3;
        ushort start = BinaryPrimitives.ReadUInt16BigEndian(cdb[2..]);
        uint allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        length = 0;
        if (rt == 3) return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb);
        ushort profile = CurrentProfile;
        bool present = MediumPresent;
        data[..8].Clear();
        BinaryPrimitives.WriteUInt16BigEndian(data[6..], profile);
        int at = 8;
        // (feature code, current, additional bytes) in feature-code order; every feature is persistent.
        void Feature(Span<byte> d, ushort code, bool current, ReadOnlySpan<byte> body)
        {
            if (code < start || (rt == 1 && !current) || (rt == 2 && code != start)) return;
            BinaryPrimitives.WriteUInt16BigEndian(d[at..], code);
            d[at + 2] = (byte)(0x02 | (current ? 1 : 0) | (code == 0x0001 ? 0x04 : 0)); // version 1 for Core, persistent, current
            d[at + 3] = (byte)body.Length;
            body.CopyTo(d[(at + 4)..]);
            at += 4 + body.Length;
        }
        Span<byte> profiles = [0x00, 0x10, (byte)(profile == ProfileDvdRom ? 1 : 0), 0, 0x00, 0x08, (byte)(profile == ProfileCdRom ? 1 : 0), 0];
        Feature(data, 0x0000, true, profiles);                      // profile list
        Feature(data, 0x0001, true, [0, 0, 0, 1, 0, 0, 0, 0]);      // core: SCSI physical interface
        Feature(data, 0x0002, true, [0x02, 0, 0, 0]);               // morphing: asynchronous event notification (polled)
        Feature(data, 0x0003, true, [(byte)(0x29 | (Locked ? 0x04 : 0)), 0, 0, 0]); // removable medium: tray, eject, lock
        Span<byte> random = [0, 0, 0x08, 0x00, 0, 1, 0, 0];             // random readable: 2048-byte blocks, blocking 1
        Feature(data, 0x0010, present, random);
        Feature(data, 0x001E, present && profile == ProfileCdRom, [0, 0, 0, 0]); // CD read
        Feature(data, 0x001F, present && profile == ProfileDvdRom, [0, 0, 0, 0]); // DVD read
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)(at - 4));
        return Done(allocation, at, out length);
    }

    private byte ReadToc(ReadOnlySpan<byte> cdb, Span<byte> data, out int length)
    {
        length = 0;
        if (RequireMedium() is { } r) return r;
        bool msf = (cdb[1] & 2) != 0;
        int format = cdb[2] & 0x0F;
        if (format == 0 && (cdb[9] >> 6) != 0) format = cdb[9] >> 6; // the older SFF-8020 place for the format
        byte track = cdb[6];
        uint allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        uint leadOut = Image!.Blocks;
        int at = 4;
        void Descriptor(Span<byte> d, byte number, uint lba)
        {
            d.Slice(at, 8).Clear();
            d[at + 1] = 0x14; // ADR 1 (position), control 4 (data track)
            d[at + 2] = number;
            WriteAddress(d.Slice(at + 4, 4), lba, msf);
            at += 8;
        }
        switch (format)
        {
            case 0: // TOC: track 1 (the data track) and the lead-out
                if (track > 1 && track != 0xAA) return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb);
                if (track <= 1) Descriptor(data, 1, 0);
                Descriptor(data, 0xAA, leadOut);
                break;
            case 1: // session information: one session, its first track starts at 0
                Descriptor(data, 1, 0);
                break;
            default:
                return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb);
        }
        BinaryPrimitives.WriteUInt16BigEndian(data, (ushort)(at - 2));
        data[2] = 1; // first track (session)
        data[3] = 1; // last track (session)
        return Done(allocation, at, out length);
    }

    /// <summary>An address as LBA or as minute/second/frame (LBA + 150, 75 frames a second).</summary>
    private static void WriteAddress(Span<byte> d, uint lba, bool msf)
    {
        if (!msf) { BinaryPrimitives.WriteUInt32BigEndian(d, lba); return; }
        uint frames = lba + 150;
        d[0] = 0;
        d[1] = (byte)Math.Min(frames / (60 * 75), 255);
        d[2] = (byte)(frames / 75 % 60);
        d[3] = (byte)(frames % 75);
    }

    private byte GetEventStatus(ReadOnlySpan<byte> cdb, Span<byte> data, out int length)
    {
        length = 0;
        if ((cdb[1] & 1) == 0) return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb); // only polled operation
        uint allocation = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
        const byte MediaClass = 0x10;
        data[..8].Clear();
        data[3] = MediaClass; // supported event classes
        if ((cdb[4] & MediaClass) == 0)
        {
            data[2] = 0x80; // NEA: none of the requested classes is supported
            return Done(allocation, 4, out length);
        }
        BinaryPrimitives.WriteUInt16BigEndian(data, 6);
        data[2] = 0x04; // media class
        data[4] = (byte)PendingMediaEvent;
        data[5] = (byte)((TrayOpen || Image is null ? 0x01 : 0) | (MediumPresent ? 0x02 : 0));
        PendingMediaEvent = MediaEvent.None; // reported once
        return Done(allocation, 8, out length);
    }

    private byte StartStop(ReadOnlySpan<byte> cdb)
    {
        bool loadEject = (cdb[4] & 2) != 0, start = (cdb[4] & 1) != 0;
        if (!loadEject) return Good(); // spin up or down: nothing to do
        if (!start)
        {
            if (Locked) return Check(Scsi.KeyIllegalRequest, Scsi.AscMediumRemovalPrevented);
            if (!TrayOpen) { TrayOpen = true; PendingMediaEvent = MediaEvent.MediaRemoval; }
            return Good();
        }
        if (TrayOpen)
        {
            // Closing the tray loads the image that stayed in it.
            TrayOpen = false;
            if (Image is not null) { PendingUnitAttention = Scsi.AscMediumChanged; PendingMediaEvent = MediaEvent.NewMedia; }
        }
        return Good();
    }

    private byte ReadDiscInformation(ReadOnlySpan<byte> cdb, Span<byte> data, out int length)
    {
        length = 0;
        if (RequireMedium() is { } r) return r;
        if ((cdb[1] & 7) != 0) return Check(Scsi.KeyIllegalRequest, Scsi.AscInvalidFieldInCdb); // only standard disc information
        data[..34].Clear();
        BinaryPrimitives.WriteUInt16BigEndian(data, 32);
        data[2] = 0x0E; // last session complete, disc complete (finalized, not erasable)
        data[3] = 1;    // first track
        data[4] = 1;    // sessions
        data[5] = 1;    // first track in last session
        data[6] = 1;    // last track in last session
        data[8] = 0x00; // CD-DA or CD-ROM disc type
        return Done(BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]), 34, out length);
    }

    public void Dispose()
    {
        Image?.Dispose();
        Image = null;
    }
}
