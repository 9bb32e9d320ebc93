/* virtio-vsock (virtio device type 19) driver: rx 0, tx 1, event 2; stream packets with the 44-byte header.
   Polled; one connection at a time; enough for the host/guest round-trip tests. */
#include "virtio_vsock.h"
#include "io.h"
#include "lib.h"
#include "virtio.h"

#define VIRTIO_ID_VSOCK 19
#define VSOCK_F_STREAM (1ULL << 0)
#define HOST_CID 2
#define TYPE_STREAM 1
#define OP_REQUEST 1
#define OP_RESPONSE 2
#define OP_RST 3
#define OP_SHUTDOWN 4
#define OP_RW 5
#define OP_CREDIT_UPDATE 6
#define OP_CREDIT_REQUEST 7
#define SHUTDOWN_BOTH 3
#define BUF_ALLOC 65536
#define RX_BUFS 8
#define RX_BUF_SIZE 2048
#define MAX_DATA 1024

struct vsock_hdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
} PACKED;

static struct virtio_dev vs_dev;
static struct virtq rx_vq, tx_vq, ev_vq;
static int vs_ready;
static u64 guest_cid;
static u32 fwd_cnt, next_port = 40000;
static u8 rx_bufs[RX_BUFS][RX_BUF_SIZE] __attribute__((aligned(64)));
static u8 tx_buf[sizeof(struct vsock_hdr) + MAX_DATA] __attribute__((aligned(64)));
static u8 ev_buf[8] __attribute__((aligned(8)));
static struct vsock_hdr rx_hdr;
static u8 rx_data[RX_BUF_SIZE];

static u64 read_guest_cid(void) { return mmio_read32(vs_dev.device_cfg) | (u64)mmio_read32(vs_dev.device_cfg + 4) << 32; }

static void post_rx(u16 i)
{
    rx_vq.desc[i].addr = (u64)(uptr)rx_bufs[i];
    rx_vq.desc[i].len = RX_BUF_SIZE;
    rx_vq.desc[i].flags = VIRTQ_DESC_F_WRITE;
    rx_vq.desc[i].next = 0;
    virtq_submit(&rx_vq, i);
}

static int vsock_init(void)
{
    if (vs_ready)
        return 0;
    if (virtio_find(&vs_dev, VIRTIO_ID_VSOCK)) {
        kprintf("vsock: no virtio-vsock device\n");
        return -1;
    }
    if (virtio_negotiate(&vs_dev, VSOCK_F_STREAM) || virtio_queue_setup(&vs_dev, &rx_vq, 0) || virtio_queue_setup(&vs_dev, &tx_vq, 1) ||
        virtio_queue_setup(&vs_dev, &ev_vq, 2)) {
        kprintf("vsock: device setup failed (status 0x%x)\n", virtio_status(&vs_dev));
        return -1;
    }
    guest_cid = read_guest_cid();
    virtio_driver_ok(&vs_dev);
    for (u16 i = 0; i < RX_BUFS && i < rx_vq.size; i++)
        post_rx(i);
    ev_vq.desc[0].addr = (u64)(uptr)ev_buf;
    ev_vq.desc[0].len = sizeof(ev_buf);
    ev_vq.desc[0].flags = VIRTQ_DESC_F_WRITE;
    virtq_submit(&ev_vq, 0);
    vs_ready = 1;
    return 0;
}

#define EVENT_TRANSPORT_RESET 0

/* Takes the events the device sent. VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (virtio 1.2, 5.10.6.6; a restored snapshot):
   connections are gone and the CID may have changed (a cloned VM), so it is read again. */
static void vsock_take_events(void)
{
    while (*(volatile u16 *)&ev_vq.used.idx != ev_vq.last_used) {
        barrier();
        ev_vq.last_used++;
        u32 id = *(volatile u32 *)ev_buf;
        if (id == EVENT_TRANSPORT_RESET) {
            guest_cid = read_guest_cid();
            kprintf("vsock: transport reset (cid %lu)\n", guest_cid);
        }
        virtq_submit(&ev_vq, 0);
    }
}

static int vs_send(u16 op, u32 src_port, u32 dst_port, u32 flags, const void *data, u32 len)
{
    struct vsock_hdr *h = (struct vsock_hdr *)tx_buf;
    if (len > MAX_DATA)
        len = MAX_DATA;
    h->src_cid = guest_cid;
    h->dst_cid = HOST_CID;
    h->src_port = src_port;
    h->dst_port = dst_port;
    h->len = len;
    h->type = TYPE_STREAM;
    h->op = op;
    h->flags = flags;
    h->buf_alloc = BUF_ALLOC;
    h->fwd_cnt = fwd_cnt;
    if (len)
        memcpy(tx_buf + sizeof(*h), data, len);
    tx_vq.desc[0].addr = (u64)(uptr)tx_buf;
    tx_vq.desc[0].len = sizeof(*h) + len;
    tx_vq.desc[0].flags = 0;
    tx_vq.desc[0].next = 0;
    virtq_submit(&tx_vq, 0);
    if (virtq_wait_used(&tx_vq, 1000000) < 0) {
        kprintf("vsock: tx timeout (status 0x%x)\n", virtio_status(&vs_dev));
        vs_ready = 0;
        return -1;
    }
    return 0;
}

/* Waits for the next packet into rx_hdr/rx_data. Returns the data length, or -1 on timeout. */
static long vs_recv(u64 timeout_us)
{
    long len = virtq_wait_used(&rx_vq, timeout_us);
    if (len < 0)
        return -1;
    u16 id = (u16)rx_vq.used.ring[(u16)(rx_vq.last_used - 1) % rx_vq.size].id;
    if (id >= RX_BUFS || len < (long)sizeof(rx_hdr)) {
        if (id < RX_BUFS)
            post_rx(id);
        return vs_recv(timeout_us);
    }
    memcpy(&rx_hdr, rx_bufs[id], sizeof(rx_hdr));
    long n = len - (long)sizeof(rx_hdr);
    if (n > (long)rx_hdr.len)
        n = rx_hdr.len;
    memcpy(rx_data, rx_bufs[id] + sizeof(rx_hdr), (usize)n);
    post_rx(id);
    return n;
}

/* Waits for a packet of connection (local, peer) other than a credit update; answers credit requests and sends RST
   for packets of other connections. Returns the op (0 on timeout) and the data length in *n. */
static u16 vs_wait(u32 local, u32 peer, u64 timeout_us, long *n)
{
    for (;;) {
        long got = vs_recv(timeout_us);
        if (got < 0)
            return 0;
        if (rx_hdr.dst_port != local || (peer && rx_hdr.src_port != peer)) {
            if (rx_hdr.op != OP_RST)
                vs_send(OP_RST, rx_hdr.dst_port, rx_hdr.src_port, 0, 0, 0);
            continue;
        }
        if (rx_hdr.op == OP_CREDIT_UPDATE)
            continue;
        if (rx_hdr.op == OP_CREDIT_REQUEST) {
            vs_send(OP_CREDIT_UPDATE, local, rx_hdr.src_port, 0, 0, 0);
            continue;
        }
        *n = got;
        return rx_hdr.op;
    }
}

static void vs_close(u32 local, u32 peer)
{
    long n;
    vs_send(OP_SHUTDOWN, local, peer, SHUTDOWN_BOTH, 0, 0);
    u16 op = vs_wait(local, peer, 2000000, &n);
    kprintf("vsock: closed%s\n", op == OP_RST ? "" : " (no RST from the host)");
}

void cmd_vsock_cid(void)
{
    if (vsock_init())
        return;
    vsock_take_events();
    kprintf("vsock: cid %lu\n", guest_cid);
}

void cmd_vsock_listen(u64 port)
{
    if (vsock_init())
        return;
    vsock_take_events();
    kprintf("vsock: listening on %lu (cid %lu)\n", port, guest_cid);
    long n;
    u16 op;
    for (;;) {
        op = vs_wait((u32)port, 0, 30000000, &n);
        if (!op) {
            kprintf("vsock: no connection\n");
            return;
        }
        if (op == OP_REQUEST)
            break;
        if (op != OP_RST)
            vs_send(OP_RST, (u32)port, rx_hdr.src_port, 0, 0, 0);
    }
    u32 peer = rx_hdr.src_port;
    fwd_cnt = 0;
    vs_send(OP_RESPONSE, (u32)port, peer, 0, 0, 0);
    kprintf("vsock: accepted host port %u\n", peer);
    for (;;) {
        op = vs_wait((u32)port, peer, 10000000, &n);
        if (op == OP_RW && n > 0) {
            fwd_cnt += (u32)n;
            vs_send(OP_RW, (u32)port, peer, 0, rx_data, (u32)n);
            kprintf("vsock: echoed %ld\n", n);
            break;
        }
        if (op != OP_RW) {
            kprintf("vsock: connection ended before data (op %u)\n", op);
            if (op == OP_SHUTDOWN)
                vs_send(OP_RST, (u32)port, peer, 0, 0, 0);
            return;
        }
    }
    vs_close((u32)port, peer);
}

void cmd_vsock_connect(u64 port, const char *text)
{
    if (vsock_init())
        return;
    vsock_take_events();
    u32 local = next_port++;
    long n;
    fwd_cnt = 0;
    vs_send(OP_REQUEST, local, (u32)port, 0, 0, 0);
    u16 op = vs_wait(local, (u32)port, 6000000, &n);
    if (op != OP_RESPONSE) {
        kprintf(op == OP_RST ? "vsock: connection refused\n" : "vsock: no answer (op %u)\n", op);
        return;
    }
    vs_send(OP_RW, local, (u32)port, 0, text, (u32)strlen(text));
    op = vs_wait(local, (u32)port, 5000000, &n);
    if (op != OP_RW) {
        kprintf("vsock: no reply (op %u)\n", op);
        if (op != OP_RST)
            vs_send(OP_RST, local, (u32)port, 0, 0, 0);
        return;
    }
    fwd_cnt += (u32)n;
    rx_data[n < RX_BUF_SIZE ? n : RX_BUF_SIZE - 1] = 0;
    kprintf("vsock: reply %s\n", (const char *)rx_data);
    vs_close(local, (u32)port);
}
