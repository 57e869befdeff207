/* libFuzzer entry point for WAL recovery (src/runtime/storage_recover.c
 * and the record parser of storage_file.c), through the real
 * corral_storage_open on a real data directory: the input becomes the
 * files of a data directory on /dev/shm (tmpfs, so a run costs syscalls,
 * not disk), which is then opened, closed and opened again.
 *
 * Input: an 8-byte header, then the files' bytes:
 *     u8  flags     FIX (re-seal every record: codec frame CRC, record
 *                   header and payload CRCs; snapshot and hard state CRCs),
 *                   TWO (split the WAL into two segments), HS (a hardstate
 *                   file), SNAP (a snapshot file), META (the meta file from
 *                   the input instead of a valid one), APPEND (append an
 *                   entry after recovery and recover once more)
 *     u8  first     the first segment's first index (0 taken as 1)
 *     u16 split     TWO: where the second segment starts in the WAL bytes
 *     u8  hs_len    HS: bytes of the hardstate file
 *     u8  snap_idx  SNAP: the snapshot's index (its file name)
 *     u16 snap_len  SNAP: bytes of the snapshot file
 * then hs_len bytes, snap_len bytes, META_V1_BYTES of meta (META), the WAL.
 *
 * Properties: no crash, no over-read (every file is read into an
 * exact-size heap buffer by the code under test); a refusal has a message
 * naming the directory and leaves every file as it was; a success gives
 * entries that continue the snapshot without a gap, and, for one segment
 * and no other files, exactly the entries and last hard state of the
 * longest prefix of valid records (by an independent walk of the record
 * format), the rest reported as the torn tail (unless it is all zeros:
 * the writer's preallocated space); a second open gives the
 * same state with no torn tail; an entry appended after recovery is
 * recovered after it. Build and run: tests/fuzz/README.md. */
#include "fuzz_require.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "corral.h"
#include "core/codec.h"
#include "runtime/storage.h"
#include "runtime/storage_impl.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/rbuf.h"

enum {
    F_FIX = 1,
    F_TWO = 2,
    F_HS = 4,
    F_SNAP = 8,
    F_META = 16,
    F_APPEND = 32,
};
#define HEADER_BYTES 8
#define NODE 3u
#define CLUSTER 0xc0ffeeull

static char dir[128];

static void dir_clear(void);

/* The directory goes when the process exits normally. */
static void dir_remove(void)
{
    char path[512];
    dir_clear();
    snprintf(path, sizeof(path), "%s/%s", dir, LOCK_NAME);
    unlink(path);
    rmdir(dir);
}

static void dir_init(void)
{
    if (dir[0] != '\0')
        return;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof(dir), "%s/corral-fuzz-wal-%ld", base, (long)getpid());
    /* A 16 KiB preallocation step instead of 1 MiB: the same code paths
     * (a step crossed, the zeros found again at the re-open), at a
     * fraction of the writing. */
    corral_storage_set_prealloc_bytes_for_test(16u << 10);
    FUZZ_REQUIRE(mkdir(dir, 0755) == 0 || errno == EEXIST);
    atexit(dir_remove);
}

/* Empties the directory (the lock file may stay: open creates it anyway). */
static void dir_clear(void)
{
    DIR *d = opendir(dir);
    FUZZ_REQUIRE(d != NULL);
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, LOCK_NAME) == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static void put(const char *name, const uint8_t *b, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    FUZZ_REQUIRE(fd >= 0);
    FUZZ_REQUIRE(len == 0 || write(fd, b, len) == (ssize_t)len);
    close(fd);
}

/* The file's bytes equal b[0..len) (a refused open changed nothing). */
static bool same(const char *name, const uint8_t *b, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    uint8_t *got = malloc(len + 1);
    FUZZ_REQUIRE(got != NULL);
    ssize_t n = read(fd, got, len + 1);
    close(fd);
    bool ok = n == (ssize_t)len && memcmp(got, b, len) == 0;
    free(got);
    return ok;
}

static void put_crc(uint8_t *b, size_t len)
{
    if (len >= 4)
        corral_put_le32(b + len - 4, corral_crc32c(0, b, len - 4));
}

/* FIX: walks b as records, as far as the length fields allow, and makes
 * each one valid where its bytes allow: the codec frame's trailer in an
 * entry or hard state payload, then the record's header and payload
 * checksums (the record format is written out here, not taken from
 * storage_file.c, so the walk is an independent reading of it). */
static void reseal(uint8_t *b, size_t len)
{
    size_t off = 0;
    while (len - off >= REC_OVERHEAD) {
        uint8_t *h = b + off;
        uint32_t plen = corral_get_le32(h);
        if (plen > len - off - REC_OVERHEAD)
            return;
        if (h[4] == REC_ENTRY || h[4] == REC_HARD_STATE)
            put_crc(h + REC_HEADER_BYTES, plen);
        uint32_t hcrc = corral_crc32c(0, h, 8);
        corral_put_le32(h + 8, hcrc);
        corral_put_le32(h + REC_HEADER_BYTES + plen,
                        corral_crc32c(hcrc, h + REC_HEADER_BYTES, plen));
        off += REC_OVERHEAD + plen;
    }
}

/* The oracle for one segment with first index first: the entries and the
 * last hard state of the longest prefix of valid records, and whether
 * that prefix is a recovery success (a segment header first, contiguous
 * entries, no second header, nothing valid after a bad record). */
struct expect {
    bool clean; /* recovery must succeed */
    size_t end; /* bytes of the valid prefix */
    uint32_t n; /* its entries */
    struct corral_raft_entry e[64];
    bool over; /* more entries than e holds: not compared */
    bool has_hs;
    struct corral_raft_hard_state hs;
    bool zero_tail; /* after a non-empty prefix only zeros: preallocated space, not torn */
};

static bool rec_valid(const uint8_t *b, size_t len, size_t off, uint8_t *type, uint32_t *plen)
{
    if (len - off < REC_OVERHEAD)
        return false;
    const uint8_t *h = b + off;
    uint32_t hcrc = corral_get_le32(h + 8);
    *plen = corral_get_le32(h);
    *type = h[4];
    if (hcrc != corral_crc32c(0, h, 8) || *plen > REC_PAYLOAD_MAX || h[5] || h[6] || h[7] ||
        *type < REC_SEGMENT || *type > REC_HARD_STATE || *plen > len - off - REC_OVERHEAD)
        return false;
    return corral_crc32c(hcrc, h + REC_HEADER_BYTES, *plen) ==
           corral_get_le32(h + REC_HEADER_BYTES + *plen);
}

static void expect_free(struct expect *x)
{
    for (uint32_t i = 0; i < x->n && i < 64; i++)
        corral_rbuf_unref(x->e[i].data);
}

static void oracle(const uint8_t *b, size_t len, uint64_t first, struct expect *x)
{
    memset(x, 0, sizeof(*x));
    /* Without a snapshot the log starts at 1; an empty segment is what a
     * crash right after creating it leaves. */
    x->clean = first == 1;
    size_t off = 0;
    uint8_t type;
    uint32_t plen;
    while (off < len && rec_valid(b, len, off, &type, &plen)) {
        const uint8_t *p = b + off + REC_HEADER_BYTES;
        if (off == 0) {
            if (type != REC_SEGMENT || plen != REC_SEGMENT_BYTES ||
                corral_get_le32(p) != WAL_MAGIC ||
                corral_get_le32(p + 4) != CORRAL_STORAGE_FORMAT_VERSION ||
                corral_get_le64(p + 8) != first)
                x->clean = false;
        } else if (type == REC_ENTRY) {
            struct corral_raft_entry e;
            if (corral_codec_entry_decode(p, plen, &e) != 0) {
                x->clean = false;
            } else if (e.index != first + x->n) {
                x->clean = false;
                corral_rbuf_unref(e.data);
            } else if (x->n < 64) {
                x->e[x->n++] = e;
            } else {
                x->n++;
                x->over = true;
                corral_rbuf_unref(e.data);
            }
        } else if (type == REC_HARD_STATE) {
            if (corral_codec_hard_state_decode(p, plen, &x->hs) != 0)
                x->clean = false;
            x->has_hs = true;
        } else {
            x->clean = false;
        }
        if (!x->clean)
            break;
        off += REC_OVERHEAD + plen;
    }
    x->end = off;
    x->zero_tail = off > 0;
    for (size_t o = off; x->zero_tail && o < len; o++)
        x->zero_tail = b[o] == 0;
    /* A bad record with a valid one anywhere after it is corruption. */
    for (size_t o = off + 1; x->clean && o < len; o++) {
        if (rec_valid(b, len, o, &type, &plen))
            x->clean = false;
    }
    if (x->n > 0 && x->over)
        x->n = 64; /* only the first 64 are compared */
}

static bool same_entry(const struct corral_raft_entry *a, const struct corral_raft_entry *b)
{
    uint32_t la = a->data ? a->data->len : 0, lb = b->data ? b->data->len : 0;
    return a->index == b->index && a->term == b->term && a->type == b->type && la == lb &&
           (la == 0 || memcmp(a->data->data, b->data->data, la) == 0);
}

static bool same_state(const struct corral_storage_state *a, const struct corral_storage_state *b)
{
    if (a->fresh != b->fresh || a->hs.term != b->hs.term || a->hs.vote != b->hs.vote ||
        a->hs.commit != b->hs.commit || a->snap.index != b->snap.index ||
        a->snap.term != b->snap.term || a->n_entries != b->n_entries ||
        (a->snap_data == NULL) != (b->snap_data == NULL))
        return false;
    if (a->snap_data != NULL && (a->snap_data->len != b->snap_data->len ||
                                 memcmp(a->snap_data->data, b->snap_data->data, a->snap_data->len)))
        return false;
    for (uint32_t i = 0; i < a->n_entries; i++) {
        if (!same_entry(&a->entries[i], &b->entries[i]))
            return false;
    }
    return true;
}

/* What holds for any successful open. */
static void check_state(const struct corral_storage_state *st)
{
    for (uint32_t i = 0; i < st->n_entries; i++)
        FUZZ_REQUIRE(st->entries[i].index == st->snap.index + 1 + i);
    FUZZ_REQUIRE(st->fresh == (st->snap.index == 0 && st->n_entries == 0 && st->hs.term == 0 &&
                               st->hs.vote == 0 && st->hs.commit == 0));
    FUZZ_REQUIRE((st->snap.index == 0) == (st->snap_data == NULL));
}

static int open_dir(struct corral_storage **s, struct corral_storage_state *st)
{
    static const struct corral_storage_ident id = {.node_id = NODE, .cluster_id = CLUSTER};
    char err[512];
    memset(err, 'x', sizeof(err));
    int rv = corral_storage_open(dir, &id, s, st, err, sizeof(err));
    if (rv != 0) {
        /* A one-line message naming the directory. */
        FUZZ_REQUIRE(*s == NULL && strncmp(err, dir, strlen(dir)) == 0 && err[strlen(dir)] == '/');
        FUZZ_REQUIRE(memchr(err, '\0', sizeof(err)) != NULL && strchr(err, '\n') == NULL);
    }
    return rv;
}

/* Re-opens the directory: the same state, no torn tail. */
static void reopen_same(const struct corral_storage_state *want)
{
    struct corral_storage *s;
    struct corral_storage_state st;
    FUZZ_REQUIRE(open_dir(&s, &st) == 0);
    FUZZ_REQUIRE(st.torn_bytes == 0 && same_state(&st, want));
    corral_storage_close(s);
    corral_storage_state_free(&st);
}

/* After recovery the log takes the next entry, and a recovery finds it. */
static void append_one(struct corral_storage *s, const struct corral_storage_state *st)
{
    uint64_t last = st->n_entries ? st->entries[st->n_entries - 1].index : st->snap.index;
    uint64_t term = st->n_entries ? st->entries[st->n_entries - 1].term : st->snap.term;
    struct corral_raft_entry e = {.term = term,
                                  .index = last + 1,
                                  .type = CORRAL_RAFT_ENTRY_NORMAL,
                                  .data = corral_rbuf_new("appended", 8)};
    FUZZ_REQUIRE(e.data != NULL);
    FUZZ_REQUIRE(corral_storage_append(s, &e, 1) == 0 && corral_storage_sync(s) == 0);
    corral_storage_close(s);
    struct corral_storage *s2;
    struct corral_storage_state st2;
    FUZZ_REQUIRE(open_dir(&s2, &st2) == 0);
    FUZZ_REQUIRE(st2.n_entries == st->n_entries + 1 && st2.torn_bytes == 0);
    FUZZ_REQUIRE(same_entry(&st2.entries[st->n_entries], &e));
    for (uint32_t i = 0; i < st->n_entries; i++)
        FUZZ_REQUIRE(same_entry(&st2.entries[i], &st->entries[i]));
    corral_rbuf_unref(e.data);
    corral_storage_close(s2);
    corral_storage_state_free(&st2);
}

struct files {
    uint8_t flags;
    uint64_t first, first2;
    uint8_t *wal; /* the whole WAL (both segments) */
    size_t wal_len, split;
    uint8_t *hs, *snap, *meta;
    size_t hs_len, snap_len;
    uint64_t snap_idx;
    char name1[NAME_BYTES], name2[NAME_BYTES], snap_name[NAME_BYTES];
};

static uint8_t *dup_bytes(const uint8_t *b, size_t len)
{
    uint8_t *d = malloc(len > 0 ? len : 1);
    FUZZ_REQUIRE(d != NULL);
    if (len > 0)
        memcpy(d, b, len);
    return d;
}

/* Splits the input into the files; false when too short. */
static bool split_input(const uint8_t *data, size_t size, struct files *f)
{
    memset(f, 0, sizeof(*f));
    if (size < HEADER_BYTES)
        return false;
    f->flags = data[0];
    f->first = data[1] ? data[1] : 1;
    f->split = corral_get_le16(data + 2);
    f->hs_len = f->flags & F_HS ? data[4] : 0;
    f->snap_idx = data[5];
    f->snap_len = f->flags & F_SNAP ? corral_get_le16(data + 6) : 0;
    size_t meta_len = f->flags & F_META ? META_V1_BYTES : 0;
    size_t off = HEADER_BYTES;
    if (size - off < f->hs_len + f->snap_len + meta_len)
        return false;
    f->hs = dup_bytes(data + off, f->hs_len);
    off += f->hs_len;
    f->snap = dup_bytes(data + off, f->snap_len);
    off += f->snap_len;
    f->meta = dup_bytes(data + off, meta_len);
    off += meta_len;
    f->wal_len = size - off;
    f->wal = dup_bytes(data + off, f->wal_len);
    if (!(f->flags & F_TWO) || f->split > f->wal_len)
        f->split = f->wal_len;
    return true;
}

static void files_free(struct files *f)
{
    free(f->wal);
    free(f->hs);
    free(f->snap);
    free(f->meta);
}

/* FIX for the other files: their trailing checksums, and the codec
 * frames inside a snapshot (the meta frame ends with its own CRC). */
static void fix_files(struct files *f)
{
    reseal(f->wal, f->split);
    reseal(f->wal + f->split, f->wal_len - f->split);
    put_crc(f->hs, f->hs_len);
    if (f->snap_len >= SNAP_HEADER_BYTES + 8) {
        size_t mlen = corral_get_le32(f->snap + 8);
        if (mlen <= f->snap_len - SNAP_HEADER_BYTES - 8)
            put_crc(f->snap + SNAP_HEADER_BYTES, mlen);
        put_crc(f->snap, f->snap_len);
    }
    put_crc(f->meta, f->flags & F_META ? META_V1_BYTES : 0);
}

static void write_files(struct files *f)
{
    dir_clear();
    if (f->flags & F_META) {
        put(META_NAME, f->meta, META_V1_BYTES);
    } else {
        uint8_t m[META_V1_BYTES];
        corral_put_le32(m, META_MAGIC);
        corral_put_le32(m + 4, CORRAL_STORAGE_FORMAT_VERSION);
        corral_put_le64(m + 8, NODE);
        corral_put_le64(m + 16, CLUSTER);
        put_crc(m, META_V1_BYTES);
        put(META_NAME, m, META_V1_BYTES);
    }
    if (f->flags & F_HS)
        put(HARD_STATE_NAME, f->hs, f->hs_len);
    if (f->flags & F_SNAP) {
        storage_snap_name(f->snap_name, f->snap_idx);
        put(f->snap_name, f->snap, f->snap_len);
    }
    storage_wal_name(f->name1, f->first);
    put(f->name1, f->wal, f->split);
    if (f->flags & F_TWO) {
        /* Named by what its header says, when it says anything. */
        const uint8_t *b = f->wal + f->split;
        size_t n = f->wal_len - f->split;
        f->first2 = n >= REC_HEADER_BYTES + REC_SEGMENT_BYTES
                        ? corral_get_le64(b + REC_HEADER_BYTES + 8)
                        : f->first + 1;
        storage_wal_name(f->name2, f->first2);
        if (strcmp(f->name2, f->name1) != 0)
            put(f->name2, b, n);
    }
}

static void fuzz_one(struct files *f)
{
    write_files(f);
    bool simple = !(f->flags & (F_TWO | F_HS | F_SNAP | F_META));
    struct expect x;
    if (simple)
        oracle(f->wal, f->wal_len, f->first, &x);
    struct corral_storage *s;
    struct corral_storage_state st;
    int rv = open_dir(&s, &st);
    if (rv != 0) {
        FUZZ_REQUIRE(!simple || !x.clean);
        /* Nothing on disk changed. */
        FUZZ_REQUIRE(same(f->name1, f->wal, f->split));
        if (f->flags & F_SNAP)
            FUZZ_REQUIRE(same(f->snap_name, f->snap, f->snap_len));
        if (f->flags & F_HS)
            FUZZ_REQUIRE(same(HARD_STATE_NAME, f->hs, f->hs_len));
        if (simple)
            expect_free(&x);
        return;
    }
    check_state(&st);
    if (simple) {
        FUZZ_REQUIRE(x.clean);
        FUZZ_REQUIRE(st.torn_bytes == (x.zero_tail ? 0 : f->wal_len - x.end));
        FUZZ_REQUIRE(x.over ? st.n_entries > 64 : st.n_entries == x.n);
        for (uint32_t i = 0; i < x.n; i++)
            FUZZ_REQUIRE(same_entry(&st.entries[i], &x.e[i]));
        struct corral_raft_hard_state zero = {0};
        const struct corral_raft_hard_state *hs = x.has_hs ? &x.hs : &zero;
        FUZZ_REQUIRE(st.hs.term == hs->term && st.hs.vote == hs->vote &&
                     st.hs.commit == hs->commit);
        expect_free(&x);
    }
    corral_storage_close(s);
    reopen_same(&st);
    corral_storage_state_free(&st);
    if (f->flags & F_APPEND) {
        FUZZ_REQUIRE(open_dir(&s, &st) == 0);
        append_one(s, &st);
        corral_storage_state_free(&st);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dir_init();
    struct files f;
    if (!split_input(data, size, &f))
        return 0;
    /* FIX chooses the re-sealed files instead of the raw ones: each
     * input is one recovery (and its re-open), not two. */
    if (f.flags & F_FIX)
        fix_files(&f);
    fuzz_one(&f);
    files_free(&f);
    return 0;
}
