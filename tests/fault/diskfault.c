/* diskfault: an LD_PRELOAD shim for tests that makes disk writes fail on
 * demand (tests/cluster/test_disk_faults.py). Never linked into corral.
 *
 *     LD_PRELOAD=build/tests/fault/libdiskfault.so
 *     CORRAL_FAULT_DIR=/path/to/data-dir   only files under it (and the
 *                                          directory itself) are affected
 *     CORRAL_FAULT_FILE=/path/to/mode      holds one word, read at every
 *                                          call, so a test can switch
 *                                          faults while the process runs
 *
 * Modes (a missing, empty or unknown file is "off"):
 *     off           every call goes through
 *     fsync_eio     fsync and fdatasync fail with EIO (nothing is synced)
 *     write_enospc  write, pwrite, writev, pwritev fail with ENOSPC
 *                   (nothing is written)
 *     write_eio     the same, with EIO
 *     write_short   writes of 2 bytes or more write only the first half
 *                   and return that count (a correct caller loops)
 *     fsync_slow_ms=N  fsync and fdatasync sleep N ms (at most 60000)
 *                   before they go through: a slow disk
 *                   (tests/cluster/test_leader_transfer.py)
 *
 * The environment is read at every call too (getenv), so it is the one of
 * the process; CORRAL_FAULT_DIR must be an absolute path without symlinks
 * (it is compared with /proc/self/fd/N). Every call that is failed is
 * counted in the file $CORRAL_FAULT_FILE.hits (one byte appended per hit;
 * a slowed call counts too),
 * so a test can tell that the fault was met.
 *
 * Every fsync or fdatasync that succeeds on such a file appends a line
 * "<size> <path>" to $CORRAL_FAULT_FILE.synced: what the file held when it
 * was last made durable. A test can cut files back to it after a fault
 * to play a disk that lost what was never synced. The size counts up to
 * the file's last non-zero byte, plus 4: a WAL segment is preallocated
 * with zeros that later records overwrite in place, so its length says
 * nothing, and a record's checksum may end in up to 4 zero bytes. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum mode { M_OFF, M_FSYNC_EIO, M_WRITE_ENOSPC, M_WRITE_EIO, M_WRITE_SHORT, M_FSYNC_SLOW };

#define SLOW_MS_MAX 60000
/* fsync_slow_ms's N, as the last current_mode() read it. */
static long slow_ms;

/* The mode in CORRAL_FAULT_FILE, read with raw syscalls (no stdio, no
 * wrapped call). */
static enum mode current_mode(void)
{
    const char *path = getenv("CORRAL_FAULT_FILE");
    if (path == NULL || path[0] == '\0')
        return M_OFF;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return M_OFF;
    char buf[64];
    ssize_t n = (ssize_t)syscall(SYS_read, fd, buf, sizeof(buf) - 1);
    syscall(SYS_close, fd);
    if (n <= 0)
        return M_OFF;
    buf[n] = '\0';
    buf[strcspn(buf, " \t\r\n")] = '\0';
    if (strcmp(buf, "fsync_eio") == 0)
        return M_FSYNC_EIO;
    if (strcmp(buf, "write_enospc") == 0)
        return M_WRITE_ENOSPC;
    if (strcmp(buf, "write_eio") == 0)
        return M_WRITE_EIO;
    if (strcmp(buf, "write_short") == 0)
        return M_WRITE_SHORT;
    if (strncmp(buf, "fsync_slow_ms=", 14) == 0) {
        char *end = NULL;
        long ms = strtol(buf + 14, &end, 10);
        if (end != buf + 14 && *end == '\0' && ms > 0 && ms <= SLOW_MS_MAX) {
            slow_ms = ms;
            return M_FSYNC_SLOW;
        }
    }
    return M_OFF;
}

/* True when fd is a file under CORRAL_FAULT_DIR or that directory; its
 * path in path (len bytes) when path is not NULL. */
static int fd_path_in_dir(int fd, char *path, size_t len)
{
    const char *dir = getenv("CORRAL_FAULT_DIR");
    if (dir == NULL || dir[0] != '/')
        return 0;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    char link[64], target[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return 0;
    target[n] = '\0';
    if ((size_t)n < dl || strncmp(target, dir, dl) != 0)
        return 0;
    if (target[dl] != '\0' && target[dl] != '/')
        return 0;
    if (path != NULL)
        snprintf(path, len, "%s", target);
    return 1;
}

static int fd_in_dir(int fd)
{
    return fd_path_in_dir(fd, NULL, 0);
}

/* The file's bytes up to its last non-zero one, plus 4, at most size
 * (read through its path: the fd may be write-only). */
static long long data_end(const char *path, long long size)
{
    static char buf[65536];
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return size;
    long long end = size, out = 0;
    while (end > 0) {
        long long from = end > (long long)sizeof(buf) ? end - (long long)sizeof(buf) : 0;
        ssize_t n = (ssize_t)syscall(SYS_pread64, fd, buf, (size_t)(end - from), (off_t)from);
        if (n != (ssize_t)(end - from)) {
            out = size; /* unreadable: the whole file */
            break;
        }
        ssize_t i = n;
        while (i > 0 && buf[i - 1] == 0)
            i--;
        if (i > 0) {
            out = from + i + 4 < size ? from + i + 4 : size;
            break;
        }
        end = from;
    }
    syscall(SYS_close, fd);
    return out;
}

/* After a successful sync of fd: appends "<size> <path>" to the .synced
 * file when fd is a regular file in the directory. */
static void record_sync(int fd)
{
    int saved = errno;
    const char *ctl = getenv("CORRAL_FAULT_FILE");
    char path[4096], name[4096], line[4200];
    struct stat st;
    if (ctl != NULL && ctl[0] != '\0' && fd_path_in_dir(fd, path, sizeof(path)) &&
        fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        snprintf(name, sizeof(name), "%s.synced", ctl) < (int)sizeof(name)) {
        int n =
            snprintf(line, sizeof(line), "%lld %s\n", data_end(path, (long long)st.st_size), path);
        int out = (int)syscall(SYS_openat, AT_FDCWD, name,
                               O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (out >= 0 && n > 0 && n < (int)sizeof(line))
            syscall(SYS_write, out, line, (size_t)n);
        if (out >= 0)
            syscall(SYS_close, out);
    }
    errno = saved;
}

static void count_hit(void)
{
    const char *path = getenv("CORRAL_FAULT_FILE");
    char hits[4096];
    if (path == NULL || snprintf(hits, sizeof(hits), "%s.hits", path) >= (int)sizeof(hits))
        return;
    int fd =
        (int)syscall(SYS_openat, AT_FDCWD, hits, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    syscall(SYS_write, fd, "x", 1);
    syscall(SYS_close, fd);
}

/* The fault for a call of kind (sync or write) on fd: M_OFF to pass it
 * through. errno is kept for calls passed through. */
static enum mode fault_for(int fd, int is_sync)
{
    int saved = errno;
    enum mode m = current_mode();
    if (m != M_OFF && (m == M_FSYNC_EIO || m == M_FSYNC_SLOW) != is_sync)
        m = M_OFF;
    if (m != M_OFF && !fd_in_dir(fd))
        m = M_OFF;
    if (m != M_OFF)
        count_hit();
    errno = saved;
    return m;
}

/* dlsym gives a data pointer; its bytes are copied into the function
 * pointer (a cast is not ISO C). */
#define REAL(name, type)                                                                           \
    static type real_##name;                                                                       \
    if (real_##name == NULL) {                                                                     \
        void *p_ = dlsym(RTLD_NEXT, #name);                                                        \
        if (p_ == NULL)                                                                            \
            abort();                                                                               \
        memcpy(&real_##name, &p_, sizeof(p_));                                                     \
    }

typedef int (*sync_fn)(int);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);

/* The sync fault for fd: -1 with errno set (fail), or 0 to go through,
 * after sleeping in M_FSYNC_SLOW. */
static int sync_fault(int fd)
{
    switch (fault_for(fd, 1)) {
    case M_FSYNC_EIO:
        errno = EIO;
        return -1;
    case M_FSYNC_SLOW: {
        int saved = errno;
        struct timespec ts = {.tv_sec = slow_ms / 1000, .tv_nsec = (slow_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        errno = saved;
        return 0;
    }
    default:
        return 0;
    }
}

int fsync(int fd)
{
    REAL(fsync, sync_fn)
    if (sync_fault(fd) != 0)
        return -1;
    int rv = real_fsync(fd);
    if (rv == 0)
        record_sync(fd);
    return rv;
}

int fdatasync(int fd)
{
    REAL(fdatasync, sync_fn)
    if (sync_fault(fd) != 0)
        return -1;
    int rv = real_fdatasync(fd);
    if (rv == 0)
        record_sync(fd);
    return rv;
}

/* For a write of len bytes: -1 with errno set (fail), or the number of
 * bytes to pass through (len, or half of it). */
static ssize_t write_len(int fd, size_t len)
{
    switch (fault_for(fd, 0)) {
    case M_WRITE_ENOSPC:
        errno = ENOSPC;
        return -1;
    case M_WRITE_EIO:
        errno = EIO;
        return -1;
    case M_WRITE_SHORT:
        return (ssize_t)(len >= 2 ? len / 2 : len);
    default:
        return (ssize_t)len;
    }
}

ssize_t write(int fd, const void *buf, size_t len)
{
    REAL(write, write_fn)
    ssize_t n = write_len(fd, len);
    return n < 0 ? -1 : real_write(fd, buf, (size_t)n);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    REAL(pwrite, pwrite_fn)
    ssize_t n = write_len(fd, len);
    return n < 0 ? -1 : real_pwrite(fd, buf, (size_t)n, off);
}

/* The first iovecs of iov covering at most want bytes, in out (the last
 * one cut); returns their count. */
static int cut_iov(const struct iovec *iov, int cnt, size_t want, struct iovec *out)
{
    int k = 0;
    for (int i = 0; i < cnt && want > 0; i++) {
        out[k] = iov[i];
        if (out[k].iov_len > want)
            out[k].iov_len = want;
        want -= out[k].iov_len;
        k++;
    }
    return k;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t t = 0;
    for (int i = 0; i < cnt; i++)
        t += iov[i].iov_len;
    return t;
}

#define IOV_CUT_MAX 1024

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    REAL(writev, writev_fn)
    size_t total = iov_total(iov, cnt);
    ssize_t n = write_len(fd, total);
    if (n < 0)
        return -1;
    if ((size_t)n == total || cnt > IOV_CUT_MAX)
        return real_writev(fd, iov, cnt);
    struct iovec cut[IOV_CUT_MAX];
    return real_writev(fd, cut, cut_iov(iov, cnt, (size_t)n, cut));
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    REAL(pwritev, pwritev_fn)
    size_t total = iov_total(iov, cnt);
    ssize_t n = write_len(fd, total);
    if (n < 0)
        return -1;
    if ((size_t)n == total || cnt > IOV_CUT_MAX)
        return real_pwritev(fd, iov, cnt, off);
    struct iovec cut[IOV_CUT_MAX];
    return real_pwritev(fd, cut, cut_iov(iov, cnt, (size_t)n, cut), off);
}
