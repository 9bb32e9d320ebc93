/* virtio-net (virtio device type 1) driver, polled: queue 0 receives, queue 1 transmits.
   Features: MAC, STATUS, MRG_RXBUF (every packet starts with a 12-byte virtio_net_hdr).
   The stack answers ARP requests for its address and ICMP echo requests, and takes an address by DHCP (RFC 2131:
   DISCOVER, OFFER, REQUEST, ACK), nothing else. */
#include "virtio_net.h"
#include "io.h"
#include "lib.h"
#include "timer.h"
#include "virtio.h"

#define VIRTIO_ID_NET 1
#define F_MAC (1ULL << 5)
#define F_MRG_RXBUF (1ULL << 15)
#define F_STATUS (1ULL << 16)
#define HDR 12
#define BUF 2048
#define ETH_ARP 0x0806
#define ETH_IP 0x0800

static struct virtio_dev net_dev;
static struct virtq net_rx, net_tx;
static u8 rx_buf[VQ_SIZE][BUF] __attribute__((aligned(64)));
static u8 tx_buf[BUF] __attribute__((aligned(64)));
static u8 net_mac[6];
static u8 net_addr[4];
static int net_ready, net_has_addr;

static u16 get16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }
static void put16(u8 *p, u16 v) { p[0] = (u8)(v >> 8); p[1] = (u8)v; }

/* Posts rx descriptor `id` (a whole device-writable buffer) without notifying. */
static void rx_post(u16 id)
{
    net_rx.desc[id].addr = (u64)(uptr)rx_buf[id];
    net_rx.desc[id].len = BUF;
    net_rx.desc[id].flags = VIRTQ_DESC_F_WRITE;
    net_rx.avail.ring[net_rx.avail.idx % net_rx.size] = id;
    barrier();
    *(volatile u16 *)&net_rx.avail.idx = net_rx.avail.idx + 1;
}

static void rx_kick(void) { barrier(); *(volatile u16 *)(uptr)net_rx.notify_addr = net_rx.index; }

static int net_init(void)
{
    if (net_ready)
        return 0;
    if (virtio_find(&net_dev, VIRTIO_ID_NET)) {
        kprintf("net: no virtio-net device\n");
        return -1;
    }
    if (virtio_negotiate(&net_dev, F_MAC | F_MRG_RXBUF | F_STATUS) || virtio_queue_setup(&net_dev, &net_rx, 0)
        || virtio_queue_setup(&net_dev, &net_tx, 1)) {
        kprintf("net: device setup failed (status 0x%x)\n", virtio_status(&net_dev));
        return -1;
    }
    for (int i = 0; i < 6; i++)
        net_mac[i] = mmio_read8(net_dev.device_cfg + i);
    virtio_driver_ok(&net_dev);
    for (u16 i = 0; i < net_rx.size; i++)
        rx_post(i);
    rx_kick();
    net_ready = 1;
    return 0;
}

int net_attach(void) { return net_ready ? 1 : net_init() == 0 ? 2 : 0; }

int net_release_slot(u8 slot)
{
    if (!net_ready || net_dev.pci.bus != 0 || net_dev.pci.dev != slot)
        return 0;
    virtio_reset(&net_dev);
    net_ready = 0;
    return 1;
}

/* Sends tx_buf[HDR .. HDR+len) as one frame; waits for the device to take it. */
static int net_xmit(u32 len)
{
    memset(tx_buf, 0, HDR);
    net_tx.desc[0].addr = (u64)(uptr)tx_buf;
    net_tx.desc[0].len = HDR + len;
    net_tx.desc[0].flags = 0;
    virtq_submit(&net_tx, 0);
    return virtq_wait_used(&net_tx, 1000000) < 0 ? -1 : 0;
}

static u16 csum(const u8 *p, u32 len)
{
    u32 sum = 0;
    for (u32 i = 0; i + 1 < len; i += 2)
        sum += get16(p + i);
    if (len & 1)
        sum += (u32)p[len - 1] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (u16)~sum;
}

/* An ARP packet (request or reply) from us; `tha`/`tpa` are the target's. */
static int send_arp(u16 oper, const u8 *eth_dst, const u8 *tha, const u8 *tpa)
{
    u8 *f = tx_buf + HDR;
    memcpy(f, eth_dst, 6);
    memcpy(f + 6, net_mac, 6);
    put16(f + 12, ETH_ARP);
    u8 *a = f + 14;
    put16(a, 1);         /* Ethernet */
    put16(a + 2, ETH_IP);
    a[4] = 6;
    a[5] = 4;
    put16(a + 6, oper);
    memcpy(a + 8, net_mac, 6);
    memcpy(a + 14, net_addr, 4);
    memcpy(a + 18, tha, 6);
    memcpy(a + 24, tpa, 4);
    memset(f + 42, 0, 18); /* pad to the 60-byte minimum */
    return net_xmit(60);
}

/* Handles one received frame; returns 1 if it sent an ICMP echo reply. */
static int net_input(const u8 *f, u32 len)
{
    if (len < 14)
        return 0;
    u16 type = get16(f + 12);
    if (type == ETH_ARP && len >= 42) {
        const u8 *a = f + 14;
        if (get16(a) == 1 && get16(a + 2) == ETH_IP && a[4] == 6 && a[5] == 4 && get16(a + 6) == 1
            && !memcmp(a + 24, net_addr, 4))
            send_arp(2, a + 8, a + 8, a + 14);
        return 0;
    }
    if (type != ETH_IP || len < 14 + 20)
        return 0;
    const u8 *ip = f + 14;
    u32 ihl = (u32)(ip[0] & 15) * 4, total = get16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || total < ihl + 8 || 14 + total > len || 14 + total > BUF - HDR)
        return 0;
    if (ip[9] != 1 || memcmp(ip + 16, net_addr, 4) || csum(ip, ihl) != 0)
        return 0;
    const u8 *icmp = ip + ihl;
    if (icmp[0] != 8 || csum(icmp, total - ihl) != 0) /* echo request with a good checksum */
        return 0;
    u8 *r = tx_buf + HDR;
    memcpy(r, f + 6, 6);
    memcpy(r + 6, net_mac, 6);
    put16(r + 12, ETH_IP);
    u8 *rip = r + 14;
    memcpy(rip, ip, total);
    memcpy(rip + 12, ip + 16, 4); /* swap the addresses */
    memcpy(rip + 16, ip + 12, 4);
    rip[8] = 64;                  /* TTL */
    put16(rip + 10, 0);
    put16(rip + 10, csum(rip, ihl));
    u8 *ricmp = rip + ihl;
    ricmp[0] = 0; /* echo reply */
    ricmp[1] = 0;
    put16(ricmp + 2, 0);
    put16(ricmp + 2, csum(ricmp, total - ihl));
    u32 flen = 14 + total < 60 ? 60 : 14 + total;
    if (flen > 14 + total)
        memset(r + 14 + total, 0, flen - 14 - total);
    return net_xmit(flen) == 0;
}

/* Takes the next received frame (waiting until `deadline`, in timer ticks), hands a single-buffer frame to `handle`
   and gives the buffers back; returns what `handle` returned (0 for a frame it did not see), or -1 at the deadline. */
static int net_receive(u64 deadline, int (*handle)(const u8 *f, u32 len, void *ctx), void *ctx)
{
    while (*(volatile u16 *)&net_rx.used.idx == net_rx.last_used) {
        if ((s64)(timer_ticks() - deadline) > 0)
            return -1;
        cpu_pause();
    }
    barrier();
    struct virtq_used_elem e = net_rx.used.ring[net_rx.last_used % net_rx.size];
    net_rx.last_used++;
    u16 id = (u16)(e.id % net_rx.size);
    u16 nbufs = (u16)(rx_buf[id][10] | rx_buf[id][11] << 8);
    int result = 0;
    if (nbufs == 1 && e.len > HDR && e.len <= BUF)
        result = handle(rx_buf[id] + HDR, e.len - HDR, ctx);
    for (u16 extra = 1; extra < nbufs; extra++) { /* a frame over several buffers: not for us, give them back */
        while (*(volatile u16 *)&net_rx.used.idx == net_rx.last_used)
            cpu_pause();
        u16 more = (u16)(net_rx.used.ring[net_rx.last_used % net_rx.size].id % net_rx.size);
        net_rx.last_used++;
        rx_post(more);
    }
    rx_post(id);
    rx_kick();
    return result;
}

static int serve_frame(const u8 *f, u32 len, void *ctx)
{
    (void)ctx;
    return net_input(f, len);
}

/* Processes received frames until `want` echo replies were sent or `seconds` passed; returns the replies. */
static u64 net_serve(u64 want, u64 seconds)
{
    u64 replies = 0, deadline = timer_ticks() + timer_us_to_ticks(seconds * 1000000);
    while (replies < want) {
        int r = net_receive(deadline, serve_frame, 0);
        if (r < 0)
            break;
        replies += (u64)r;
    }
    return replies;
}

/* ---- DHCP client (RFC 2131/2132), over raw frames: we have no address until the ACK ---- */
#define DHCP_DISCOVER 1
#define DHCP_OFFER 2
#define DHCP_REQUEST 3
#define DHCP_ACK 5
#define DHCP_NAK 6
#define BOOTP_LEN 300 /* the fixed 236 bytes, the magic cookie and options, padded as clients commonly do */

struct dhcp_reply {
    u32 xid;
    u8 type, yiaddr[4], server[4], router[4], mask[4];
    u32 lease_s;
};

static void put32(u8 *p, u32 v) { put16(p, (u16)(v >> 16)); put16(p + 2, (u16)v); }
static u32 get32(const u8 *p) { return (u32)get16(p) << 16 | get16(p + 2); }

/* A DISCOVER, or a REQUEST for `ip` from `server`, broadcast from 0.0.0.0:68 to 255.255.255.255:67. */
static int dhcp_send(u8 type, u32 xid, const u8 *ip, const u8 *server)
{
    static const char host[] = "kvmps-guest";
    u8 *f = tx_buf + HDR;
    memset(f, 0, 14 + 20 + 8 + BOOTP_LEN);
    memset(f, 0xff, 6);
    memcpy(f + 6, net_mac, 6);
    put16(f + 12, ETH_IP);
    u8 *ipp = f + 14, *udp = ipp + 20, *b = udp + 8;
    b[0] = 1; /* BOOTREQUEST */
    b[1] = 1; /* Ethernet */
    b[2] = 6;
    put32(b + 4, xid);
    put16(b + 10, 0x8000); /* broadcast: we cannot receive unicast before we have an address */
    memcpy(b + 28, net_mac, 6);
    u8 *o = b + 236;
    put32(o, 0x63825363); /* magic cookie */
    o += 4;
    *o++ = 53, *o++ = 1, *o++ = type;
    if (type == DHCP_REQUEST) {
        *o++ = 50, *o++ = 4, memcpy(o, ip, 4), o += 4;
        *o++ = 54, *o++ = 4, memcpy(o, server, 4), o += 4;
    }
    *o++ = 12, *o++ = sizeof host - 1, memcpy(o, host, sizeof host - 1), o += sizeof host - 1;
    *o++ = 55, *o++ = 3, *o++ = 1, *o++ = 3, *o++ = 51; /* ask for mask, router, lease time */
    *o++ = 255;
    ipp[0] = 0x45;
    put16(ipp + 2, 20 + 8 + BOOTP_LEN);
    ipp[8] = 64;
    ipp[9] = 17; /* UDP */
    memset(ipp + 16, 0xff, 4);
    put16(ipp + 10, csum(ipp, 20));
    put16(udp, 68);
    put16(udp + 2, 67);
    put16(udp + 4, 8 + BOOTP_LEN); /* checksum 0: none, allowed over IPv4 */
    return net_xmit(14 + 20 + 8 + BOOTP_LEN);
}

/* Reads a BOOTREPLY for our transaction into the dhcp_reply at `ctx`; returns 1 when it is one, else 0. */
static int dhcp_frame(const u8 *f, u32 len, void *ctx)
{
    struct dhcp_reply *r = ctx;
    if (len < 14 + 20 + 8 + 240 || get16(f + 12) != ETH_IP)
        return 0;
    const u8 *ip = f + 14;
    u32 ihl = (u32)(ip[0] & 15) * 4, total = get16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 17 || 14 + total > len || total < ihl + 8 + 240)
        return 0;
    const u8 *udp = ip + ihl, *b = udp + 8, *end = ip + total;
    if (get16(udp + 2) != 68 || b[0] != 2 || get32(b + 4) != r->xid || memcmp(b + 28, net_mac, 6) || get32(b + 236) != 0x63825363)
        return 0;
    r->type = 0;
    memcpy(r->yiaddr, b + 16, 4);
    for (const u8 *o = b + 240; o < end && *o != 255;) {
        if (*o == 0) { /* pad */
            o++;
            continue;
        }
        if (o + 2 > end || o + 2 + o[1] > end)
            break;
        const u8 *v = o + 2;
        u8 n = o[1];
        if (o[0] == 53 && n == 1)
            r->type = v[0];
        else if (o[0] == 54 && n == 4)
            memcpy(r->server, v, 4);
        else if (o[0] == 3 && n >= 4)
            memcpy(r->router, v, 4);
        else if (o[0] == 1 && n == 4)
            memcpy(r->mask, v, 4);
        else if (o[0] == 51 && n == 4)
            r->lease_s = get32(v);
        o += 2 + n;
    }
    return r->type ? 1 : 0;
}

/* Sends `type` and waits for a reply of one of the wanted types, resending every 2 s, until `deadline`. */
static int dhcp_exchange(u8 type, struct dhcp_reply *r, const u8 *ip, const u8 *server, u64 deadline)
{
    while ((s64)(timer_ticks() - deadline) < 0) {
        if (dhcp_send(type, r->xid, ip, server))
            return -1;
        u64 resend = timer_ticks() + timer_us_to_ticks(2000000);
        if ((s64)(resend - deadline) > 0)
            resend = deadline;
        int got;
        while ((got = net_receive(resend, dhcp_frame, r)) >= 0) {
            if (got != 1)
                continue;
            if (type == DHCP_DISCOVER ? r->type == DHCP_OFFER : r->type == DHCP_ACK || r->type == DHCP_NAK)
                return 0;
        }
    }
    return -1;
}

static void net_dhcp(u64 seconds)
{
    struct dhcp_reply r;
    memset(&r, 0, sizeof r);
    r.xid = (u32)timer_ticks() ^ get32(net_mac + 2);
    u64 deadline = timer_ticks() + timer_us_to_ticks(seconds * 1000000);
    if (dhcp_exchange(DHCP_DISCOVER, &r, 0, 0, deadline)) {
        kprintf("net: dhcp: no offer within %lu s\n", seconds);
        return;
    }
    u8 offered[4], server[4];
    memcpy(offered, r.yiaddr, 4);
    memcpy(server, r.server, 4);
    if (dhcp_exchange(DHCP_REQUEST, &r, offered, server, deadline)) {
        kprintf("net: dhcp: no answer to the request within %lu s\n", seconds);
        return;
    }
    if (r.type == DHCP_NAK) {
        kprintf("net: dhcp: %u.%u.%u.%u refused by %u.%u.%u.%u\n", offered[0], offered[1], offered[2], offered[3], server[0], server[1], server[2], server[3]);
        return;
    }
    memcpy(net_addr, r.yiaddr, 4);
    net_has_addr = 1;
    kprintf("net: dhcp lease %u.%u.%u.%u mask %u.%u.%u.%u router %u.%u.%u.%u server %u.%u.%u.%u for %u s\n",
            net_addr[0], net_addr[1], net_addr[2], net_addr[3], r.mask[0], r.mask[1], r.mask[2], r.mask[3],
            r.router[0], r.router[1], r.router[2], r.router[3], server[0], server[1], server[2], server[3], r.lease_s);
}

/* ---- ping: ARP for the target, then one ICMP echo request, answering others' ARP and pings meanwhile ---- */
struct ping_state {
    u8 target[4], target_mac[6];
    int have_mac, replied;
    u16 id;
};

static int ping_frame(const u8 *f, u32 len, void *ctx)
{
    struct ping_state *p = ctx;
    net_input(f, len); /* ARP requests and echo requests to us still get answers */
    if (len >= 42 && get16(f + 12) == ETH_ARP) {
        const u8 *a = f + 14;
        if (get16(a + 6) == 2 && !memcmp(a + 14, p->target, 4)) {
            memcpy(p->target_mac, a + 8, 6);
            p->have_mac = 1;
        }
        return 0;
    }
    if (len < 14 + 20 + 8 || get16(f + 12) != ETH_IP)
        return 0;
    const u8 *ip = f + 14;
    u32 ihl = (u32)(ip[0] & 15) * 4, total = get16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 1 || 14 + total > len || total < ihl + 8)
        return 0;
    const u8 *icmp = ip + ihl;
    if (icmp[0] == 0 && !memcmp(ip + 12, p->target, 4) && get16(icmp + 4) == p->id)
        p->replied = 1;
    return 0;
}

static int send_echo_request(const struct ping_state *p)
{
    u8 *f = tx_buf + HDR;
    memcpy(f, p->target_mac, 6);
    memcpy(f + 6, net_mac, 6);
    put16(f + 12, ETH_IP);
    u8 *ip = f + 14, *icmp = ip + 20;
    memset(ip, 0, 20 + 8 + 32);
    ip[0] = 0x45;
    put16(ip + 2, 20 + 8 + 32);
    ip[8] = 64;
    ip[9] = 1;
    memcpy(ip + 12, net_addr, 4);
    memcpy(ip + 16, p->target, 4);
    put16(ip + 10, csum(ip, 20));
    icmp[0] = 8; /* echo request */
    put16(icmp + 4, p->id);
    put16(icmp + 6, 1);
    for (int i = 0; i < 32; i++)
        icmp[8 + i] = (u8)('a' + i % 26);
    put16(icmp + 2, csum(icmp, 8 + 32));
    return net_xmit(14 + 20 + 8 + 32);
}

static void net_ping(const u8 target[4], u64 seconds)
{
    static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, zero[6] = { 0 };
    struct ping_state p;
    memset(&p, 0, sizeof p);
    memcpy(p.target, target, 4);
    p.id = (u16)timer_ticks();
    u64 start = timer_ticks(), deadline = start + timer_us_to_ticks(seconds * 1000000);
    /* ARP (resent every second) until the target answers, then the echo request (resent every second). */
    while (!p.replied && (s64)(timer_ticks() - deadline) < 0) {
        int asked_echo = p.have_mac;
        if (asked_echo ? send_echo_request(&p) : send_arp(1, bcast, zero, p.target))
            break;
        u64 resend = timer_ticks() + timer_us_to_ticks(1000000);
        if ((s64)(resend - deadline) > 0)
            resend = deadline;
        /* Until the reply, the resend time, or (after an ARP) the target's MAC: then the echo request goes at once. */
        while (!p.replied && !(p.have_mac && !asked_echo) && net_receive(resend, ping_frame, &p) >= 0)
            ;
    }
    if (p.replied)
        kprintf("net: ping %u.%u.%u.%u replied\n", target[0], target[1], target[2], target[3]);
    else
        kprintf("net: ping %u.%u.%u.%u: no reply within %lu s%s\n", target[0], target[1], target[2], target[3], seconds,
                p.have_mac ? "" : " (no ARP answer)");
}

static int parse_ip(const char *s, u8 out[4])
{
    for (int i = 0; i < 4; i++) {
        u32 v = 0;
        int digits = 0;
        while (*s >= '0' && *s <= '9' && digits < 4) {
            v = v * 10 + (u32)(*s++ - '0');
            digits++;
        }
        if (!digits || v > 255 || (i < 3 ? *s++ != '.' : *s != 0))
            return -1;
        out[i] = (u8)v;
    }
    return 0;
}

/* "WORD [SECONDS]": ends WORD at its space and reads SECONDS (1 to 600) into *secs when given; -1 when malformed. */
static int split_seconds(char *word, u64 *secs)
{
    char *sp = word;
    while (*sp && *sp != ' ')
        sp++;
    if (!*sp)
        return 0;
    *sp++ = 0;
    return parse_u64(sp, secs) || !*secs || *secs > 600 ? -1 : 0;
}

/* What sending needs: an address (net ip or net dhcp) and a working device; says why not and returns -1 otherwise. */
static int ready_to_send(void)
{
    if (!net_has_addr) {
        kprintf("net: no address (net ip A.B.C.D first)\n");
        return -1;
    }
    return net_init();
}

void cmd_net(char *arg)
{
    u64 n, secs = 30;
    if (!strcmp(arg, "info")) {
        if (net_init())
            return;
        u16 st = (u16)(mmio_read8(net_dev.device_cfg + 6) | mmio_read8(net_dev.device_cfg + 7) << 8);
        kprintf("net: mac %02x:%02x:%02x:%02x:%02x:%02x link %s\n", net_mac[0], net_mac[1], net_mac[2], net_mac[3],
                net_mac[4], net_mac[5], (st & 1) ? "up" : "down");
    } else if (!strncmp(arg, "ip ", 3)) {
        if (parse_ip(arg + 3, net_addr)) {
            kprintf("usage: net ip A.B.C.D\n");
            return;
        }
        net_has_addr = 1;
        kprintf("net: ip %u.%u.%u.%u\n", net_addr[0], net_addr[1], net_addr[2], net_addr[3]);
    } else if (!strncmp(arg, "serve ", 6)) {
        char *num = arg + 6;
        if (split_seconds(num, &secs) || parse_u64(num, &n)) {
            kprintf("usage: net serve N [SECONDS]\n");
            return;
        }
        if (ready_to_send())
            return;
        kprintf("net: serving\n");
        kprintf("net: replied %lu\n", net_serve(n, secs));
        if (virtio_status(&net_dev) & VIRTIO_STATUS_NEEDS_RESET) {
            kprintf("net: device needs reset\n");
            net_ready = 0;
        }
    } else if (!strcmp(arg, "send")) {
        static const u8 bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff }, zero[6] = { 0 };
        if (ready_to_send())
            return;
        /* Gratuitous ARP: a request for our own address. */
        kprintf(send_arp(1, bcast, zero, net_addr) ? "net: send failed\n" : "net: sent\n");
    } else if (!strncmp(arg, "ping ", 5)) {
        u8 target[4];
        if (split_seconds(arg + 5, &secs) || parse_ip(arg + 5, target)) {
            kprintf("usage: net ping A.B.C.D [SECONDS]\n");
            return;
        }
        if (ready_to_send())
            return;
        net_ping(target, secs);
    } else if (!strcmp(arg, "dhcp") || !strncmp(arg, "dhcp ", 5)) {
        if (arg[4] && (parse_u64(arg + 5, &secs) || !secs || secs > 600)) {
            kprintf("usage: net dhcp [SECONDS]\n");
            return;
        }
        if (net_init())
            return;
        net_dhcp(secs);
    } else {
        kprintf("usage: net info | net ip A.B.C.D | net dhcp [SECONDS] | net ping A.B.C.D [SECONDS] | net serve N [SECONDS] | net send\n");
    }
}
