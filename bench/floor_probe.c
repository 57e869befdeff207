/* corral-floor-probe: the physical floor a request's latency is held to
 * (bench/latency_bench.py, issue 14), measured on this machine:
 *
 *   corral-floor-probe fsync DIR [N]   N times: a 128-byte write in place
 *       into a preallocated 1 MiB file under DIR, then fdatasync (what
 *       one WAL append costs at least)
 *   corral-floor-probe fsync-append DIR [N]   the same, each write at the
 *       end of the file (what a WAL that grows its file pays)
 *   corral-floor-probe tcp [N]         N ping-pongs of 128 bytes between
 *       two processes over loopback TCP with TCP_NODELAY (one peer round
 *       trip)
 *
 * Prints one JSON line: {"probe":..., "n":..., "p50_us":..., "p99_us":...}. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_BYTES 128
#define FILE_BYTES (1u << 20)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *probe, uint64_t *t, size_t n)
{
    qsort(t, n, sizeof(*t), cmp_u64);
    printf("{\"probe\":\"%s\",\"n\":%zu,\"p50_us\":%.1f,\"p99_us\":%.1f}\n", probe, n,
           (double)t[n / 2] / 1000.0, (double)t[n * 99 / 100] / 1000.0);
}

static int die(const char *what)
{
    fprintf(stderr, "corral-floor-probe: %s: %s\n", what, strerror(errno));
    return 1;
}

static int probe_fsync(const char *dir, size_t n, uint64_t *t, bool append)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/floor-probe.%d", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return die(path);
    unlink(path);
    static char zero[FILE_BYTES];
    if (!append && (write(fd, zero, sizeof(zero)) != (ssize_t)sizeof(zero) || fsync(fd) != 0))
        return die("preallocating");
    char msg[MSG_BYTES];
    memset(msg, 'x', sizeof(msg));
    for (size_t i = 0; i < n; i++) {
        off_t off =
            append ? (off_t)(i * MSG_BYTES) : (off_t)((i * MSG_BYTES) % (FILE_BYTES - MSG_BYTES));
        uint64_t t0 = now_ns();
        if (pwrite(fd, msg, sizeof(msg), off) != (ssize_t)sizeof(msg) || fdatasync(fd) != 0)
            return die("write+fdatasync");
        t[i] = now_ns() - t0;
    }
    close(fd);
    report(append ? "fsync-append" : "fsync", t, n);
    return 0;
}

static int read_full(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static int probe_tcp(size_t n, uint64_t *t)
{
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 1) != 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) != 0)
        return die("listening on loopback");
    pid_t child = fork();
    if (child < 0)
        return die("fork");
    int one = 1;
    char buf[MSG_BYTES];
    if (child == 0) { /* the echo side, one connection, then exit */
        int c = accept(ls, NULL, NULL);
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        while (read_full(c, buf, sizeof(buf)) == 0 && write(c, buf, sizeof(buf)) == sizeof(buf))
            ;
        _exit(0);
    }
    close(ls);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)) != 0)
        return die("connecting");
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(buf, 'x', sizeof(buf));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t t0 = now_ns();
        if (write(s, buf, sizeof(buf)) != sizeof(buf) || read_full(s, buf, sizeof(buf)) != 0)
            rc = die("ping-pong");
        t[i] = now_ns() - t0;
    }
    close(s);
    waitpid(child, NULL, 0);
    if (rc == 0)
        report("tcp", t, n);
    return rc;
}

int main(int argc, char **argv)
{
    bool disk = argc >= 2 && strncmp(argv[1], "fsync", 5) == 0;
    if (argc < 2 || (disk && argc < 3)) {
        fprintf(stderr, "usage: corral-floor-probe fsync|fsync-append DIR [N] | tcp [N]\n");
        return 2;
    }
    const char *ns = disk ? (argc > 3 ? argv[3] : NULL) : (argc > 2 ? argv[2] : NULL);
    long n = ns != NULL ? strtol(ns, NULL, 10) : 2000;
    if (n < 10 || n > 10000000) {
        fprintf(stderr, "corral-floor-probe: N must be 10..10000000\n");
        return 2;
    }
    uint64_t *t = calloc((size_t)n, sizeof(*t));
    if (t == NULL)
        return die("calloc");
    int rc = strcmp(argv[1], "fsync") == 0          ? probe_fsync(argv[2], (size_t)n, t, false)
             : strcmp(argv[1], "fsync-append") == 0 ? probe_fsync(argv[2], (size_t)n, t, true)
             : strcmp(argv[1], "tcp") == 0          ? probe_tcp((size_t)n, t)
                                                    : 2;
    free(t);
    return rc;
}
