/* Opening a data directory: the lock, the meta file, the latest snapshot,
 * the hard state checkpoint and the WAL segments, validated completely
 * before anything on disk is changed (a torn tail truncated, stale files
 * removed). */
#include "runtime/storage.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corral.h"
#include "core/codec.h"
#include "core/state.h"
#include "runtime/storage_impl.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"

struct loader {
    struct corral_storage *s;
    struct corral_storage_state *st;
    const char *dir;
    char *err;
    size_t errlen;
    uint64_t *wal; /* segment first indexes, sorted */
    uint32_t n_wal, cap_wal;
    uint64_t snap; /* the latest snapshot's index, 0 when none */
    bool has_meta;
    bool meta_v1; /* to be upgraded once everything validated */
    bool has_snap;
    bool has_ckpt;
    uint32_t cap_entries;
    bool torn;        /* the last segment ends in a torn tail... */
    uint64_t torn_at; /* ...from this offset */
};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
fail(struct loader *ld, int rv, const char *fmt, ...)
{
    if (ld->errlen == 0)
        return rv;
    int n = snprintf(ld->err, ld->errlen, "%s/", ld->dir);
    if (n >= 0 && (size_t)n < ld->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rv;
}

static int file_error(struct loader *ld, int rv, const char *name)
{
    if (rv == CORRAL_ETOOBIG)
        return fail(ld, CORRAL_ECORRUPT, "%s: larger than any file this version writes", name);
    if (rv == CORRAL_ENOMEM)
        return fail(ld, rv, "%s: out of memory", name);
    return fail(ld, CORRAL_EIO, "%s: cannot read: %s", name, strerror(errno));
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int note_wal(struct loader *ld, uint64_t first)
{
    if (ld->n_wal == ld->cap_wal) {
        uint32_t cap = ld->cap_wal ? 2 * ld->cap_wal : 16;
        uint64_t *wal = corral_realloc(ld->wal, cap * sizeof(*wal));
        if (wal == NULL)
            return CORRAL_ENOMEM;
        ld->wal = wal;
        ld->cap_wal = cap;
    }
    ld->wal[ld->n_wal++] = first;
    return 0;
}

static int note_name(struct loader *ld, const char *name)
{
    uint64_t v;
    if (strcmp(name, META_NAME) == 0)
        ld->has_meta = true;
    else if (strcmp(name, HARD_STATE_NAME) == 0)
        ld->has_ckpt = true;
    else if (storage_parse_wal_name(name, &v))
        return note_wal(ld, v);
    else if (storage_parse_snap_name(name, &v) && (!ld->has_snap || v > ld->snap)) {
        ld->has_snap = true;
        ld->snap = v;
    }
    return 0; /* anything else is not ours and left alone */
}

static int scan_dir(struct loader *ld)
{
    int fd = dup(ld->s->dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        storage_file_close(&fd);
        return fail(ld, CORRAL_EIO, ": cannot list: %s", strerror(errno));
    }
    rewinddir(d);
    int rv = 0;
    struct dirent *e;
    errno = 0;
    while (rv == 0 && (e = readdir(d)) != NULL)
        rv = note_name(ld, e->d_name);
    if (rv == 0 && errno != 0)
        rv = fail(ld, CORRAL_EIO, ": cannot list: %s", strerror(errno));
    closedir(d);
    if (rv == CORRAL_ENOMEM)
        return fail(ld, rv, ": out of memory");
    if (ld->n_wal > 1)
        qsort(ld->wal, ld->n_wal, sizeof(*ld->wal), cmp_u64);
    return rv;
}

/* The meta file's bytes for id (version 2) into m; returns the length. */
static size_t meta_encode(const struct corral_storage_ident *id, uint8_t *m)
{
    size_t name = strlen(id->name), cluster = strlen(id->cluster_name);
    corral_put_le32(m, META_MAGIC);
    corral_put_le32(m + 4, META_VERSION);
    corral_put_le64(m + 8, id->node_id);
    corral_put_le64(m + 16, id->cluster_id);
    size_t at = 24;
    m[at++] = (uint8_t)name;
    memcpy(m + at, id->name, name);
    at += name;
    m[at++] = (uint8_t)cluster;
    memcpy(m + at, id->cluster_name, cluster);
    at += cluster;
    corral_put_le32(m + at, corral_crc32c(0, m, at));
    return at + 4;
}

static int write_meta(struct loader *ld, const struct corral_storage_ident *id)
{
    uint8_t m[META_BYTES_MAX];
    struct piece p = {m, meta_encode(id, m)};
    if (storage_file_write_atomic(ld->s->dir_fd, META_NAME, &p, 1) != 0)
        return fail(ld, CORRAL_EIO, META_NAME ": cannot write: %s", strerror(errno));
    return 0;
}

/* One u8-length name at m[*at] into dst. */
static bool meta_name(const uint8_t *m, size_t end, size_t *at, char *dst)
{
    if (*at >= end || m[*at] > end - *at - 1 ||
        (m[*at] > 0 && !corral_state_name_valid((const char *)m + *at + 1, m[*at])))
        return false;
    size_t len = m[*at];
    memcpy(dst, m + *at + 1, len);
    dst[len] = '\0';
    *at += 1 + len;
    return true;
}

/* Decodes a meta file of version 1 or 2 into *out (names "" for 1). */
static int meta_decode(struct loader *ld, const uint8_t *m, size_t len,
                       struct corral_storage_ident *out, uint32_t *version)
{
    if (len < 8 || corral_get_le32(m) != META_MAGIC)
        return fail(ld, CORRAL_ECORRUPT, META_NAME ": not a corral meta file");
    *version = corral_get_le32(m + 4);
    if (*version != 1 && *version != META_VERSION)
        return fail(ld, CORRAL_EVERSION,
                    META_NAME ": format version %" PRIu32 ", this build reads 1 and %d", *version,
                    META_VERSION);
    if (len < META_V1_BYTES || len > META_BYTES_MAX ||
        corral_get_le32(m + len - 4) != corral_crc32c(0, m, len - 4))
        return fail(ld, CORRAL_ECORRUPT, META_NAME ": checksum mismatch or wrong size");
    memset(out, 0, sizeof(*out));
    out->node_id = corral_get_le64(m + 8);
    out->cluster_id = corral_get_le64(m + 16);
    size_t at = 24, end = len - 4;
    if (*version == META_VERSION &&
        (!meta_name(m, end, &at, out->name) || !meta_name(m, end, &at, out->cluster_name)))
        return fail(ld, CORRAL_ECORRUPT, META_NAME ": bad node or cluster name");
    if (at != end)
        return fail(ld, CORRAL_ECORRUPT, META_NAME ": checksum mismatch or wrong size");
    return 0;
}

/* The meta file against the wanted identity (storage.h); fills
 * ld->st->ident with what the file says (and, for a version-1 file, the
 * wanted names it is to be upgraded with). */
static int check_meta_ident(struct loader *ld, const struct corral_storage_ident *want,
                            const struct corral_storage_ident *have, uint32_t version)
{
    if (!want->adopt_ids &&
        (have->node_id != want->node_id || have->cluster_id != want->cluster_id))
        return fail(ld, CORRAL_EINVAL,
                    META_NAME ": belongs to node %" PRIu64 " of cluster %" PRIx64
                              ", not node %" PRIu64 " of cluster %" PRIx64,
                    have->node_id, have->cluster_id, want->node_id, want->cluster_id);
    if (version == META_VERSION && want->name[0] != '\0' && strcmp(have->name, want->name) != 0)
        return fail(ld, CORRAL_EINVAL,
                    META_NAME ": belongs to the coordinator named '%s', not '%s' (start it with "
                              "--name %s, or use another data dir)",
                    have->name, want->name, have->name);
    if (version == META_VERSION && want->cluster_name[0] != '\0' &&
        strcmp(have->cluster_name, want->cluster_name) != 0)
        return fail(ld, CORRAL_EINVAL,
                    META_NAME ": belongs to the cluster named '%s', not '%s' (--cluster-name)",
                    have->cluster_name, want->cluster_name);
    ld->st->ident = *have;
    ld->st->ident.adopt_ids = false;
    if (version == 1) {
        snprintf(ld->st->ident.name, sizeof(ld->st->ident.name), "%s", want->name);
        snprintf(ld->st->ident.cluster_name, sizeof(ld->st->ident.cluster_name), "%s",
                 want->cluster_name);
        ld->meta_v1 = true;
    }
    return 0;
}

static int check_meta(struct loader *ld, const struct corral_storage_ident *id)
{
    uint8_t *m;
    size_t len;
    int rv = storage_file_read(ld->s->dir_fd, META_NAME, META_FILE_BYTES_MAX, &m, &len);
    if (rv != 0)
        return file_error(ld, rv, META_NAME);
    struct corral_storage_ident have;
    uint32_t version = 0;
    rv = meta_decode(ld, m, len, &have, &version);
    corral_free(m);
    return rv != 0 ? rv : check_meta_ident(ld, id, &have, version);
}

/* Checks a snapshot file's layout (see storage_impl.h) and decodes it. */
static int parse_snapshot(struct loader *ld, const char *name, const uint8_t *b, size_t len)
{
    if (len < SNAP_HEADER_BYTES || corral_get_le32(b) != SNAP_MAGIC)
        return fail(ld, CORRAL_ECORRUPT, "%s: not a corral snapshot", name);
    if (corral_get_le32(b + 4) != CORRAL_STORAGE_FORMAT_VERSION)
        return fail(ld, CORRAL_EVERSION, "%s: format version %" PRIu32, name,
                    corral_get_le32(b + 4));
    if (len < SNAP_HEADER_BYTES + 8 || corral_crc32c(0, b, len - 4) != corral_get_le32(b + len - 4))
        return fail(ld, CORRAL_ECORRUPT, "%s: checksum mismatch", name);
    size_t mlen = corral_get_le32(b + 8);
    if (mlen > len - SNAP_HEADER_BYTES - 8 ||
        corral_codec_snapshot_meta_decode(b + SNAP_HEADER_BYTES, mlen, &ld->st->snap) != 0)
        return fail(ld, CORRAL_ECORRUPT, "%s: bad snapshot meta at offset %d", name,
                    SNAP_HEADER_BYTES);
    const uint8_t *d = b + SNAP_HEADER_BYTES + mlen;
    uint32_t dlen = corral_get_le32(d);
    if ((size_t)dlen != len - SNAP_HEADER_BYTES - mlen - 8 || ld->st->snap.index != ld->snap)
        return fail(ld, CORRAL_ECORRUPT, "%s: data length or index does not match", name);
    ld->st->snap_data = corral_rbuf_new(d + 4, dlen);
    if (ld->st->snap_data == NULL)
        return fail(ld, CORRAL_ENOMEM, "%s: out of memory", name);
    return 0;
}

static int load_snapshot(struct loader *ld)
{
    if (!ld->has_snap)
        return 0;
    char name[NAME_BYTES];
    storage_snap_name(name, ld->snap);
    uint8_t *b;
    size_t len;
    int rv = storage_file_read(ld->s->dir_fd, name, SNAP_FILE_BYTES_MAX, &b, &len);
    if (rv != 0)
        return file_error(ld, rv, name);
    rv = parse_snapshot(ld, name, b, len);
    corral_free(b);
    if (rv == 0 && ld->snap == 0)
        rv = fail(ld, CORRAL_ECORRUPT, "%s: a snapshot at index 0", name);
    ld->s->snap_index = ld->snap;
    return rv;
}

static int load_checkpoint(struct loader *ld)
{
    if (!ld->has_ckpt)
        return 0;
    uint8_t *b;
    size_t len;
    int rv = storage_file_read(ld->s->dir_fd, HARD_STATE_NAME, META_FILE_BYTES_MAX, &b, &len);
    if (rv != 0)
        return file_error(ld, rv, HARD_STATE_NAME);
    rv = corral_codec_hard_state_decode(b, len, &ld->s->ckpt_hs);
    corral_free(b);
    if (rv != 0)
        return fail(ld, rv == CORRAL_EVERSION ? rv : CORRAL_ECORRUPT, HARD_STATE_NAME ": %s",
                    corral_strerror(rv));
    ld->s->hs = ld->s->ckpt_hs;
    return 0;
}

static int keep_entry(struct loader *ld, struct corral_raft_entry *e)
{
    struct corral_storage_state *st = ld->st;
    /* check_order and take_entry refuse gaps, so what the caller gets
     * continues the snapshot without one, whatever was on disk. */
    assert(e->index == ld->snap + 1 + st->n_entries);
    if (st->n_entries == ld->cap_entries) {
        if (ld->cap_entries == UINT32_MAX)
            return CORRAL_ETOOBIG;
        uint64_t cap = ld->cap_entries ? 2 * (uint64_t)ld->cap_entries : 64;
        if (cap > UINT32_MAX)
            cap = UINT32_MAX;
        struct corral_raft_entry *a = corral_realloc(st->entries, (size_t)cap * sizeof(*a));
        if (a == NULL)
            return CORRAL_ENOMEM;
        st->entries = a;
        ld->cap_entries = (uint32_t)cap;
    }
    st->entries[st->n_entries++] = *e;
    return 0;
}

static int take_entry(struct loader *ld, const char *name, const struct rec *r, uint64_t off)
{
    struct segment *seg = storage_seg_last(ld->s);
    struct corral_raft_entry e;
    int rv = corral_codec_entry_decode(r->payload, r->len, &e);
    if (rv != 0)
        return fail(ld, rv == CORRAL_EVERSION ? rv : CORRAL_ECORRUPT,
                    "%s: bad entry at offset %" PRIu64 ": %s", name, off, corral_strerror(rv));
    if (e.index != seg->first + seg->n) {
        corral_rbuf_unref(e.data);
        return fail(ld, CORRAL_ECORRUPT,
                    "%s: entry %" PRIu64 " at offset %" PRIu64 ", expected %" PRIu64, name, e.index,
                    off, seg->first + seg->n);
    }
    rv = storage_seg_add_entry(seg, off);
    if (rv == 0 && e.index > ld->snap)
        rv = keep_entry(ld, &e);
    else
        corral_rbuf_unref(e.data);
    if (rv != 0)
        return fail(ld, rv, "%s: %s", name, corral_strerror(rv));
    return 0;
}

static int take_hard_state(struct loader *ld, const char *name, const struct rec *r, uint64_t off)
{
    struct corral_storage *s = ld->s;
    int rv = corral_codec_hard_state_decode(r->payload, r->len, &s->hs);
    if (rv != 0)
        return fail(ld, rv == CORRAL_EVERSION ? rv : CORRAL_ECORRUPT,
                    "%s: bad hard state at offset %" PRIu64, name, off);
    s->hs_in_wal = true; /* the last record wins */
    s->hs_seg = storage_seg_last(s)->first;
    s->hs_off = off;
    return 0;
}

static int take_header(struct loader *ld, const char *name, const struct rec *r)
{
    const uint8_t *p = r->payload;
    if (r->type != REC_SEGMENT || r->len != REC_SEGMENT_BYTES || corral_get_le32(p) != WAL_MAGIC)
        return fail(ld, CORRAL_ECORRUPT, "%s: no segment header at offset 0", name);
    if (corral_get_le32(p + 4) != CORRAL_STORAGE_FORMAT_VERSION)
        return fail(ld, CORRAL_EVERSION, "%s: format version %" PRIu32, name,
                    corral_get_le32(p + 4));
    if (corral_get_le64(p + 8) != storage_seg_last(ld->s)->first)
        return fail(ld, CORRAL_ECORRUPT, "%s: header names first index %" PRIu64, name,
                    corral_get_le64(p + 8));
    return 0;
}

static int take_record(struct loader *ld, const char *name, const struct rec *r, uint64_t off)
{
    if (off == 0)
        return take_header(ld, name, r);
    if (r->type == REC_ENTRY)
        return take_entry(ld, name, r, off);
    if (r->type == REC_HARD_STATE)
        return take_hard_state(ld, name, r, off);
    return fail(ld, CORRAL_ECORRUPT, "%s: a second segment header at offset %" PRIu64, name, off);
}

/* Where the run of zero bytes that ends b starts (len when b[len - 1] is
 * not zero). Block by block first: a preallocated tail is up to
 * PREALLOC_BYTES of zeros, and memcmp is much cheaper than a byte loop
 * (under the fuzzer's instrumentation, three callbacks a byte). */
static size_t zero_tail(const uint8_t *b, size_t len)
{
    static const uint8_t zeros[4096];
    while (len >= sizeof(zeros) && memcmp(b + len - sizeof(zeros), zeros, sizeof(zeros)) == 0)
        len -= sizeof(zeros);
    while (len > 0 && b[len - 1] == 0)
        len--;
    return len;
}

static bool valid_record_after(const uint8_t *b, size_t len, size_t from)
{
    struct rec r;
    /* A record starting in the zero tail would be all zeros: its header's
     * checksum fails. So the scan ends where the zeros begin. */
    size_t stop = zero_tail(b, len);
    for (size_t off = from; off < stop && off + REC_OVERHEAD <= len; off++) {
        if (storage_rec_parse(b, len, off, &r) == REC_OK)
            return true;
    }
    return false;
}

/* What follows the last good record at off: a torn tail when this is the
 * last segment and no valid record comes after it, else corruption. */
static int bad_record(struct loader *ld, const char *name, const uint8_t *b, size_t len, size_t off,
                      bool last)
{
    if (!last || valid_record_after(b, len, off + 1))
        return fail(ld, CORRAL_ECORRUPT, "%s: bad record at offset %zu", name, off);
    ld->torn = true;
    ld->torn_at = off;
    ld->st->torn_bytes = len - off;
    return 0;
}

static int parse_segment(struct loader *ld, const char *name, const uint8_t *b, size_t len,
                         bool last)
{
    size_t off = 0;
    struct rec r;
    while (off < len) {
        if (storage_rec_parse(b, len, off, &r) != REC_OK) {
            storage_seg_last(ld->s)->size = off;
            /* Unused preallocated space (storage_impl.h): not torn; in
             * the last segment it takes the next records. Only the last
             * one has it, as roll-over cuts a segment to its records, but
             * a zero tail elsewhere is no loss either: check_order sees
             * any entry missing after it. */
            if (off > 0 && zero_tail(b, len) <= off)
                return 0;
            return bad_record(ld, name, b, len, off, last);
        }
        int rv = take_record(ld, name, &r, off);
        if (rv != 0)
            return rv;
        assert(r.next > off && r.next <= len);
        off = r.next;
    }
    if (len == 0 && !last)
        return fail(ld, CORRAL_ECORRUPT, "%s: empty segment", name);
    if (len == 0)
        ld->torn = true; /* a crash right after creating it; torn_at 0 */
    storage_seg_last(ld->s)->size = off;
    return 0;
}

/* Segments follow each other without overlap; a gap is allowed only where
 * the snapshot covers it (a crash while deleting covered segments). */
static int check_order(struct loader *ld, const char *name, uint64_t first)
{
    struct segment *prev = storage_seg_last(ld->s);
    uint64_t prev_last = prev != NULL ? prev->first + prev->n - 1 : 0;
    uint64_t floor = prev_last > ld->snap ? prev_last : ld->snap;
    if (first <= prev_last || first > floor + 1 || first == 0)
        return fail(ld, CORRAL_ECORRUPT,
                    "%s: does not continue the log (previous ends at %" PRIu64
                    ", snapshot at %" PRIu64 ")",
                    name, prev_last, ld->snap);
    return 0;
}

static int load_segment(struct loader *ld, uint32_t i)
{
    char name[NAME_BYTES];
    storage_wal_name(name, ld->wal[i]);
    int rv = check_order(ld, name, ld->wal[i]);
    if (rv != 0)
        return rv;
    if (storage_seg_push(ld->s, ld->wal[i]) != 0)
        return fail(ld, CORRAL_ENOMEM, "%s: out of memory", name);
    uint8_t *b;
    size_t len;
    rv = storage_file_read(ld->s->dir_fd, name, SEGMENT_FILE_BYTES_MAX, &b, &len);
    if (rv != 0)
        return file_error(ld, rv, name);
    rv = parse_segment(ld, name, b, len, i + 1 == ld->n_wal);
    corral_free(b);
    return rv;
}

/* The first changes on disk, after everything validated: the torn tail
 * goes (the whole file when not even its header survived). */
static int cut_torn_tail(struct loader *ld)
{
    struct corral_storage *s = ld->s;
    struct segment *seg = storage_seg_last(s);
    char name[NAME_BYTES];
    storage_wal_name(name, seg->first);
    int rv = 0;
    if (ld->torn_at == 0) {
        if (unlinkat(s->dir_fd, name, 0) != 0)
            rv = CORRAL_EIO;
        storage_seg_free(seg);
        s->n_segs--;
    } else {
        int fd = openat(s->dir_fd, name, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)ld->torn_at) != 0 || storage_file_datasync(fd) != 0)
            rv = CORRAL_EIO;
        storage_file_close(&fd);
    }
    if (rv == 0)
        rv = storage_file_sync_dir(s->dir_fd);
    if (rv != 0)
        return fail(ld, rv, "%s: cannot truncate the torn tail: %s", name, strerror(errno));
    return 0;
}

/* Best effort: leftovers of interrupted atomic writes and older snapshots. */
static void remove_stale(struct loader *ld)
{
    int fd = dup(ld->s->dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        storage_file_close(&fd);
        return;
    }
    rewinddir(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name), ns = strlen(TMP_SUFFIX);
        uint64_t v;
        bool tmp = n > ns && strcmp(e->d_name + n - ns, TMP_SUFFIX) == 0 &&
                   (strncmp(e->d_name, "snap-", 5) == 0 ||
                    strncmp(e->d_name, META_NAME, strlen(META_NAME)) == 0 ||
                    strncmp(e->d_name, HARD_STATE_NAME, strlen(HARD_STATE_NAME)) == 0);
        bool old_snap = storage_parse_snap_name(e->d_name, &v) && v < ld->snap;
        if (tmp || old_snap)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

static int open_last_segment(struct loader *ld)
{
    struct corral_storage *s = ld->s;
    struct segment *seg = storage_seg_last(s);
    if (seg == NULL)
        return 0;
    char name[NAME_BYTES];
    storage_wal_name(name, seg->first);
    s->fd = openat(s->dir_fd, name, O_WRONLY | O_CLOEXEC);
    struct stat st;
    if (s->fd < 0 || fstat(s->fd, &st) != 0)
        return fail(ld, CORRAL_EIO, "%s: cannot open: %s", name, strerror(errno));
    /* Records continue after the last good one, in the zeros of the
     * preallocated tail when there is one (parse_segment). */
    s->file_off = seg->size;
    s->alloc_end = (uint64_t)st.st_size > seg->size ? (uint64_t)st.st_size : seg->size;
    return 0;
}

static int load(struct loader *ld, const struct corral_storage_ident *id)
{
    int rv = scan_dir(ld);
    if (rv != 0)
        return rv;
    if (!ld->has_meta && (ld->n_wal > 0 || ld->has_snap || ld->has_ckpt))
        return fail(ld, CORRAL_ECORRUPT, META_NAME ": missing, but a log or snapshot is there");
    rv = ld->has_meta ? check_meta(ld, id) : 0;
    if (rv == 0)
        rv = load_snapshot(ld);
    if (rv == 0)
        rv = load_checkpoint(ld);
    for (uint32_t i = 0; i < ld->n_wal && rv == 0; i++)
        rv = load_segment(ld, i);
    if (rv != 0)
        return rv;
    /* Validation is complete; from here on, changes. */
    if (!ld->has_meta) {
        ld->st->ident = *id;
        ld->st->ident.adopt_ids = false;
        rv = write_meta(ld, &ld->st->ident);
    } else if (ld->meta_v1 && ld->st->ident.name[0] != '\0') {
        rv = write_meta(ld, &ld->st->ident);
        ld->st->meta_upgraded = rv == 0;
    }
    if (rv == 0 && ld->torn)
        rv = cut_torn_tail(ld);
    if (rv == 0)
        remove_stale(ld);
    return rv == 0 ? open_last_segment(ld) : rv;
}

static int open_dir(struct loader *ld)
{
    struct corral_storage *s = ld->s;
    if (storage_file_mkdirs(ld->dir) != 0)
        return fail(ld, CORRAL_EIO, ": cannot create: %s", strerror(errno));
    s->dir_fd = open(ld->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dir_fd < 0)
        return fail(ld, CORRAL_EIO, ": cannot open: %s", strerror(errno));
    int rv = storage_file_lock(s->dir_fd, LOCK_NAME, &s->lock_fd);
    if (rv == CORRAL_EBUSY)
        return fail(ld, CORRAL_EIO, LOCK_NAME ": locked by another process");
    if (rv != 0)
        return fail(ld, CORRAL_EIO, LOCK_NAME ": cannot lock: %s", strerror(errno));
    return 0;
}

/* Fills in what the caller gets besides the entries. */
static void finish_state(struct loader *ld)
{
    struct corral_storage *s = ld->s;
    struct corral_storage_state *st = ld->st;
    if (storage_hs_newer(&s->ckpt_hs, &s->hs)) {
        s->hs = s->ckpt_hs;
        s->hs_in_wal = false;
    }
    st->hs = s->hs;
    struct segment *seg = storage_seg_last(s);
    uint64_t wal_last = seg != NULL ? seg->first + seg->n - 1 : 0;
    s->last_index = wal_last > s->snap_index ? wal_last : s->snap_index;
    st->fresh = st->snap.index == 0 && st->n_entries == 0 && st->hs.term == 0 && st->hs.vote == 0 &&
                st->hs.commit == 0;
}

int corral_storage_open(const char *dir, const struct corral_storage_ident *ident,
                        struct corral_storage **out, struct corral_storage_state *state, char *err,
                        size_t errlen)
{
    *out = NULL;
    memset(state, 0, sizeof(*state));
    if (errlen > 0)
        err[0] = '\0';
    struct loader ld = {.st = state, .dir = dir, .err = err, .errlen = errlen};
    if (ident == NULL || ident->node_id == 0)
        return fail(&ld, CORRAL_EINVAL, ": node id 0");
    /* The write buffer comes with the first write (storage.c). */
    struct corral_storage *s = corral_calloc(1, sizeof(*s));
    if (s == NULL)
        return fail(&ld, CORRAL_ENOMEM, ": out of memory");
    *s = (struct corral_storage){.dir_fd = -1, .lock_fd = -1, .fd = -1};
    s->segment_bytes = storage_segment_bytes();
    ld.s = s;
    int rv = open_dir(&ld);
    if (rv == 0)
        rv = load(&ld, ident);
    corral_free(ld.wal);
    if (rv != 0) {
        storage_free(s);
        corral_storage_state_free(state);
        return rv;
    }
    finish_state(&ld);
    storage_assert_consistent(s);
    *out = s;
    return 0;
}

int corral_storage_peek_ident(const char *dir, struct corral_storage_ident *out, char *err,
                              size_t errlen)
{
    if (errlen > 0)
        err[0] = '\0';
    struct loader ld = {.dir = dir, .err = err, .errlen = errlen};
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && errno == ENOENT)
        return CORRAL_ENOTFOUND;
    if (dfd < 0)
        return fail(&ld, CORRAL_EIO, ": cannot open: %s", strerror(errno));
    uint8_t *m = NULL;
    size_t len = 0;
    int rv = storage_file_read(dfd, META_NAME, META_FILE_BYTES_MAX, &m, &len);
    close(dfd);
    if (rv == CORRAL_ENOTFOUND || (rv == 0 && len == 0)) {
        corral_free(m);
        return CORRAL_ENOTFOUND;
    }
    if (rv != 0)
        return file_error(&ld, rv, META_NAME);
    uint32_t version;
    rv = meta_decode(&ld, m, len, out, &version);
    corral_free(m);
    return rv;
}
