// KvmPS test agent helper: AF_VSOCK stream sockets for the RealLinux tests (busybox has none).
//   vsock echo PORT        accept one connection on PORT, echo every byte back until EOF, then exit
//   vsock send PORT TEXT   connect to the host (CID 2) on PORT, send TEXT and a newline, print the reply line
//   vsock serve PORT PROGRAM [ARGS...]
//                          listen on PORT for ever; each connection gets a child running PROGRAM with the socket
//                          as its stdin, stdout and stderr (the test agent over vsock: /init runs
//                          "vsock serve 1024 /bin/agent"). The listening socket survives a transport reset (a
//                          snapshot restore), which resets only connected sockets, so it serves the restored VM too.
// Built static into the test initramfs by tools/linux-guest/build-initramfs.sh.
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what)
{
    fprintf(stderr, "vsock: %s: %s\n", what, strerror(errno));
    return 1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; return -1; }
        p += w; n -= (size_t)w;
    }
    return 0;
}

// Accepts connections on the bound socket s for ever; each one is served by a child that execs argv[0].
static int serve(int s, char **argv)
{
    if (listen(s, 16) < 0) return fail("listen");
    for (;;) {
        int c = accept(s, NULL, NULL);
        // Children that ended since the last connection (the agent ends when its connection does).
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == ECONNRESET) continue;
            return fail("accept");
        }
        pid_t pid = fork();
        if (pid < 0) { fprintf(stderr, "vsock: fork: %s\n", strerror(errno)); close(c); continue; }
        if (pid == 0) {
            if (dup2(c, 0) < 0 || dup2(c, 1) < 0 || dup2(c, 2) < 0) _exit(127);
            if (c > 2) close(c);
            close(s);
            execv(argv[0], argv);
            _exit(127);
        }
        close(c);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: vsock echo PORT | vsock send PORT TEXT | vsock serve PORT PROGRAM [ARGS...]\n"); return 2; }
    struct sockaddr_vm addr = { .svm_family = AF_VSOCK, .svm_port = (unsigned)strtoul(argv[2], NULL, 10) };
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (s < 0) return fail("socket");
    char buf[4096];
    if (strcmp(argv[1], "serve") == 0 && argc >= 4) {
        addr.svm_cid = VMADDR_CID_ANY;
        if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) return fail("bind");
        return serve(s, argv + 3);
    }
    if (strcmp(argv[1], "echo") == 0) {
        addr.svm_cid = VMADDR_CID_ANY;
        if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) return fail("bind");
        if (listen(s, 1) < 0) return fail("listen");
        int c = accept(s, NULL, NULL);
        if (c < 0) return fail("accept");
        ssize_t n;
        while ((n = read(c, buf, sizeof buf)) > 0)
            if (write_all(c, buf, (size_t)n) < 0) return fail("write");
        return n < 0 ? fail("read") : 0;
    }
    if (strcmp(argv[1], "send") == 0 && argc == 4) {
        addr.svm_cid = VMADDR_CID_HOST;
        if (connect(s, (struct sockaddr *)&addr, sizeof addr) < 0) return fail("connect");
        if (write_all(s, argv[3], strlen(argv[3])) < 0 || write_all(s, "\n", 1) < 0) return fail("write");
        size_t len = 0;
        ssize_t n;
        while (len < sizeof buf - 1 && (n = read(s, buf + len, sizeof buf - 1 - len)) > 0) {
            len += (size_t)n;
            if (memchr(buf, '\n', len)) break;
        }
        buf[len] = 0;
        fputs(buf, stdout);
        return 0;
    }
    fprintf(stderr, "vsock: unknown mode '%s'\n", argv[1]);
    return 2;
}
