/* Storage helpers: the WAL record format, file names, and blocking file
 * operations that retry interrupted and short transfers. */
#define _DEFAULT_SOURCE /* flock */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corral.h"
#include "runtime/storage_impl.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"

/* The REC_HEADER_BYTES at h: REC_OK with its type and payload length, or
 * REC_BAD. */
static enum rec_status header_parse(const uint8_t *h, uint8_t *type, uint32_t *plen)
{
    if (corral_crc32c(0, h, 8) != corral_get_le32(h + 8))
        return REC_BAD;
    *plen = corral_get_le32(h);
    *type = h[4];
    if (*plen > REC_PAYLOAD_MAX || *type < REC_SEGMENT || *type > REC_HARD_STATE || h[5] != 0 ||
        h[6] != 0 || h[7] != 0)
        return REC_BAD;
    return REC_OK;
}

void storage_rec_seal(uint8_t *rec, uint8_t type, uint32_t len)
{
    /* A record recovery would refuse must never be written: it would stop
     * the next start. Callers pass constants and encoder sizes. */
    assert(type >= REC_SEGMENT && type <= REC_HARD_STATE && len <= REC_PAYLOAD_MAX);
    corral_put_le32(rec, len);
    rec[4] = type;
    rec[5] = rec[6] = rec[7] = 0;
    uint32_t hcrc = corral_crc32c(0, rec, 8);
    corral_put_le32(rec + 8, hcrc);
    uint32_t crc = corral_crc32c(hcrc, rec + REC_HEADER_BYTES, len);
    corral_put_le32(rec + REC_HEADER_BYTES + len, crc);
#ifndef NDEBUG
    /* The header parses back to what was sealed. Only the header: reading
     * the payload again would double the checksum work of every write. */
    uint8_t t;
    uint32_t n;
    assert(header_parse(rec, &t, &n) == REC_OK && t == type && n == len);
#endif
}

enum rec_status storage_rec_parse(const uint8_t *buf, size_t len, size_t off, struct rec *out)
{
    if (off > len || len - off < REC_HEADER_BYTES)
        return REC_INCOMPLETE;
    const uint8_t *h = buf + off;
    uint8_t type;
    uint32_t plen;
    if (header_parse(h, &type, &plen) != REC_OK)
        return REC_BAD;
    if (len - off - REC_HEADER_BYTES < (size_t)plen + REC_TRAILER_BYTES)
        return REC_INCOMPLETE;
    const uint8_t *payload = h + REC_HEADER_BYTES;
    if (corral_crc32c(corral_get_le32(h + 8), payload, plen) != corral_get_le32(payload + plen))
        return REC_BAD;
    out->type = type;
    out->len = plen;
    out->payload = payload;
    out->next = off + REC_OVERHEAD + plen;
    assert(out->next <= len); /* whatever the bytes, never past the buffer */
    return REC_OK;
}

void storage_wal_name(char out[NAME_BYTES], uint64_t first)
{
    snprintf(out, NAME_BYTES, "wal-%016" PRIx64 ".log", first);
}

void storage_snap_name(char out[NAME_BYTES], uint64_t index)
{
    snprintf(out, NAME_BYTES, "snap-%016" PRIx64 ".snap", index);
}

/* prefix, exactly 16 lowercase hex digits, suffix. */
static bool parse_name(const char *name, const char *prefix, const char *suffix, uint64_t *v)
{
    size_t np = strlen(prefix), ns = strlen(suffix);
    if (strlen(name) != np + 16 + ns || strncmp(name, prefix, np) != 0 ||
        strcmp(name + np + 16, suffix) != 0)
        return false;
    uint64_t x = 0;
    for (size_t i = np; i < np + 16; i++) {
        char c = name[i];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (unsigned)(c - 'a' + 10);
        else
            return false;
        x = (x << 4) | d;
    }
    *v = x;
    return true;
}

bool storage_parse_wal_name(const char *name, uint64_t *first)
{
    return parse_name(name, "wal-", ".log", first);
}

bool storage_parse_snap_name(const char *name, uint64_t *index)
{
    return parse_name(name, "snap-", ".snap", index);
}

bool storage_hs_newer(const struct corral_raft_hard_state *a,
                      const struct corral_raft_hard_state *b)
{
    if (a->term != b->term)
        return a->term > b->term;
    if ((a->vote != 0) != (b->vote != 0))
        return a->vote != 0;
    return a->commit > b->commit;
}

int storage_file_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = EIO; /* no progress and no errno: not worth looping on */
        if (n <= 0)
            return CORRAL_EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int storage_file_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = EIO;
        if (n <= 0)
            return CORRAL_EIO;
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int storage_file_zero(int fd, uint64_t off, uint64_t end)
{
    static const uint8_t zeros[64 << 10];
    while (off < end) {
        size_t n = end - off < sizeof(zeros) ? (size_t)(end - off) : sizeof(zeros);
        int rv = storage_file_pwrite_all(fd, zeros, n, off);
        if (rv != 0)
            return rv;
        off += n;
    }
    return 0;
}

int storage_file_datasync(int fd)
{
    while (fdatasync(fd) != 0) {
        if (errno != EINTR)
            return CORRAL_EIO;
    }
    return 0;
}

int storage_file_sync_dir(int dir_fd)
{
    while (fsync(dir_fd) != 0) {
        if (errno != EINTR)
            return CORRAL_EIO;
    }
    return 0;
}

void storage_file_close(int *fd)
{
    if (*fd >= 0)
        close(*fd); /* not retried: on Linux the descriptor is gone either way */
    *fd = -1;
}

static int read_all(int fd, uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = read(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return CORRAL_EIO; /* an error, or the file shrank under us */
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int storage_file_read(int dir_fd, const char *name, uint64_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? CORRAL_ENOTFOUND : CORRAL_EIO;
    struct stat st;
    int rv = fstat(fd, &st) == 0 ? 0 : CORRAL_EIO;
    if (rv == 0 && (st.st_size < 0 || (uint64_t)st.st_size > max))
        rv = CORRAL_ETOOBIG;
    size_t n = rv == 0 ? (size_t)st.st_size : 0;
    uint8_t *buf = NULL;
    if (rv == 0 && n > 0) {
        buf = corral_malloc(n);
        rv = buf == NULL ? CORRAL_ENOMEM : read_all(fd, buf, n);
    }
    storage_file_close(&fd);
    if (rv != 0) {
        corral_free(buf);
        return rv;
    }
    *out = buf;
    *len = n;
    return 0;
}

int storage_file_write_atomic(int dir_fd, const char *name, const struct piece *pieces, size_t n)
{
    char tmp[NAME_BYTES + sizeof(TMP_SUFFIX)];
    if (snprintf(tmp, sizeof(tmp), "%s%s", name, TMP_SUFFIX) >= (int)sizeof(tmp))
        return CORRAL_EINVAL;
    int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return CORRAL_EIO;
    int rv = 0;
    for (size_t i = 0; i < n && rv == 0; i++)
        rv = storage_file_write_all(fd, pieces[i].p, pieces[i].len);
    while (rv == 0 && fsync(fd) != 0) {
        if (errno != EINTR)
            rv = CORRAL_EIO;
    }
    int saved = errno; /* the failure's, kept across the cleanup */
    storage_file_close(&fd);
    if (rv == 0 && renameat(dir_fd, tmp, dir_fd, name) != 0) {
        rv = CORRAL_EIO;
        saved = errno;
    }
    if (rv != 0) {
        unlinkat(dir_fd, tmp, 0);
        errno = saved;
        return rv;
    }
    return storage_file_sync_dir(dir_fd);
}

int storage_file_lock(int dir_fd, const char *name, int *fd_out)
{
    int fd = openat(dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return CORRAL_EIO;
    int r;
    while ((r = flock(fd, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR)
        ;
    if (r != 0) {
        int rv = errno == EWOULDBLOCK ? CORRAL_EBUSY : CORRAL_EIO;
        storage_file_close(&fd);
        return rv;
    }
    *fd_out = fd;
    return 0;
}

int storage_file_mkdirs(const char *path)
{
    char p[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(p))
        return CORRAL_EINVAL;
    memcpy(p, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return CORRAL_EIO;
        p[i] = c;
    }
    return 0;
}

int storage_seg_push(struct corral_storage *s, uint64_t first)
{
    if (s->n_segs == s->cap_segs) {
        uint32_t cap = s->cap_segs ? 2 * s->cap_segs : 8;
        struct segment *segs = corral_realloc(s->segs, cap * sizeof(*segs));
        if (segs == NULL)
            return CORRAL_ENOMEM;
        s->segs = segs;
        s->cap_segs = cap;
    }
    s->segs[s->n_segs++] = (struct segment){.first = first};
    return 0;
}

int storage_seg_add_entry(struct segment *seg, uint64_t off)
{
    if (off > UINT32_MAX)
        return CORRAL_ETOOBIG;
    /* Entries are indexed in file order; truncate_from relies on it. */
    assert(seg->n == 0 || off > seg->offs[seg->n - 1]);
    if (seg->n == seg->cap) {
        uint64_t cap = seg->cap ? 2 * seg->cap : 256;
        uint32_t *offs = corral_realloc(seg->offs, (size_t)cap * sizeof(*offs));
        if (offs == NULL)
            return CORRAL_ENOMEM;
        seg->offs = offs;
        seg->cap = cap;
    }
    seg->offs[seg->n++] = (uint32_t)off;
    return 0;
}

void storage_seg_free(struct segment *seg)
{
    corral_free(seg->offs);
    *seg = (struct segment){0};
}

struct segment *storage_seg_last(struct corral_storage *s)
{
    return s->n_segs > 0 ? &s->segs[s->n_segs - 1] : NULL;
}

int storage_checkpoint_hard_state(struct corral_storage *s)
{
    uint8_t buf[CORRAL_CODEC_HARD_STATE_BYTES];
    size_t len;
    int rv = corral_codec_hard_state_encode(&s->hs, buf, sizeof(buf), &len);
    if (rv != 0)
        return rv;
    struct piece p = {buf, len};
    rv = storage_file_write_atomic(s->dir_fd, HARD_STATE_NAME, &p, 1);
    if (rv == 0)
        s->ckpt_hs = s->hs;
    return rv;
}
