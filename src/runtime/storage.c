/* The storage write path: appending entries and hard states to the WAL
 * through a userspace buffer, group commit, truncation of an overwritten
 * tail, segment roll-over and snapshots. Opening and recovery are in
 * storage_recover.c. */
#include "runtime/storage.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "corral.h"
#include "core/codec.h"
#include "runtime/storage_impl.h"
#include "util/bytes.h"
#include "util/crc32c.h"
#include "util/mem.h"

static uint64_t test_segment_bytes; /* the test hook; 0 = the default */

void corral_storage_set_segment_bytes_for_test(uint64_t bytes)
{
    test_segment_bytes = bytes;
}

uint64_t storage_segment_bytes(void)
{
    return test_segment_bytes ? test_segment_bytes : CORRAL_STORAGE_SEGMENT_BYTES;
}

static uint64_t test_prealloc_bytes; /* the test hook; 0 = PREALLOC_BYTES */

void corral_storage_set_prealloc_bytes_for_test(uint64_t bytes)
{
    test_prealloc_bytes = bytes;
}

static uint64_t prealloc_bytes(void)
{
    return test_prealloc_bytes ? test_prealloc_bytes : PREALLOC_BYTES;
}

void storage_assert_consistent(const struct corral_storage *s)
{
#ifdef NDEBUG
    (void)s;
#else
    if (s->failed)
        return; /* the state of the files is unknown; s only answers EIO */
    assert((s->fd >= 0) == (s->n_segs > 0) && s->n_segs <= s->cap_segs);
    assert(s->buf_len <= WRITE_BUF_BYTES);
    if (s->n_segs == 0) {
        assert(s->buf_len == 0 && !s->hs_in_wal && s->last_index == s->snap_index);
        return;
    }
    const struct segment *last = &s->segs[s->n_segs - 1];
    uint64_t wal_last = last->first + last->n - 1;
    assert(last->first > 0 && last->n <= last->cap && s->buf_len <= last->size);
    assert(s->last_index == (wal_last > s->snap_index ? wal_last : s->snap_index));
    assert(!s->hs_in_wal || (s->hs_seg >= s->segs[0].first && s->hs_seg <= last->first));
#endif
}

/* Marks s failed on an I/O error: after a failed write or fsync the state
 * of the file is unknown, so nothing more is written through s. The
 * errno of the first failure is kept for corral_storage_errno (the file
 * helpers keep errno on CORRAL_EIO; this runs right after them). */
static int check(struct corral_storage *s, int rv)
{
    if (rv == CORRAL_EIO) {
        if (!s->failed)
            s->fail_errno = errno;
        s->failed = true;
    }
    return rv;
}

int corral_storage_errno(const struct corral_storage *s)
{
    return s->failed ? s->fail_errno : 0;
}

/* Writes the buffer in place at the end of the last segment's records,
 * first zeroing the next PREALLOC_BYTES step past them when the
 * preallocated space runs out (the batch's fdatasync then makes the new
 * size durable once, and the records after it need no size change). */
static int flush(struct corral_storage *s)
{
    if (s->buf_len == 0)
        return 0;
    assert(s->fd >= 0 && s->file_off <= s->alloc_end);
    uint64_t end = s->file_off + s->buf_len;
    int rv = check(s, storage_file_pwrite_all(s->fd, s->buf, s->buf_len, s->file_off));
    if (rv == 0 && end > s->alloc_end) {
        uint64_t step = prealloc_bytes();
        uint64_t to = (end / step + 1) * step;
        rv = check(s, storage_file_zero(s->fd, end, to));
        if (rv == 0)
            s->alloc_end = to;
    }
    if (rv != 0)
        return rv;
    s->bytes_written += s->buf_len;
    s->file_off = end;
    s->buf_len = 0;
    s->dirty = true;
    return 0;
}

/* The write buffer, allocated by the first write rather than by open: a
 * storage that is only opened (recovery, tools, tests) never needs it.
 * Called before a write changes anything, so a failure changes nothing. */
static int buf_ensure(struct corral_storage *s)
{
    if (s->buf == NULL)
        s->buf = corral_malloc(WRITE_BUF_BYTES);
    return s->buf != NULL ? 0 : CORRAL_ENOMEM;
}

/* Room for a record with len payload bytes at the end of the buffer;
 * returns where its payload goes, NULL on a write error. */
static uint8_t *record_begin(struct corral_storage *s, size_t len)
{
    assert(len <= REC_PAYLOAD_MAX && s->buf != NULL);
    if (WRITE_BUF_BYTES - s->buf_len < len + REC_OVERHEAD && flush(s) != 0)
        return NULL;
    return s->buf + s->buf_len + REC_HEADER_BYTES;
}

/* Seals the record begun last; returns its offset in the segment. */
static uint64_t record_end(struct corral_storage *s, uint8_t type, size_t len)
{
    struct segment *seg = storage_seg_last(s);
    /* record_begin made room for this len: the record is not cut short. */
    assert(seg != NULL && len + REC_OVERHEAD <= WRITE_BUF_BYTES - s->buf_len);
    uint64_t off = seg->size;
    storage_rec_seal(s->buf + s->buf_len, type, (uint32_t)len);
    s->buf_len += len + REC_OVERHEAD;
    seg->size += len + REC_OVERHEAD;
    return off;
}

/* Closes the last segment (durably, cut to its records, so only the last
 * segment ever has a zero tail) and starts wal-<first>. */
static int roll(struct corral_storage *s, uint64_t first)
{
    if (s->fd >= 0) {
        int rv = flush(s);
        if (rv == 0 && s->alloc_end > s->file_off) {
            if (ftruncate(s->fd, (off_t)s->file_off) != 0)
                rv = check(s, CORRAL_EIO);
            s->dirty = true;
        }
        if (rv == 0 && s->dirty)
            rv = check(s, storage_file_datasync(s->fd));
        if (rv != 0)
            return rv;
        storage_file_close(&s->fd);
        s->dirty = false;
    }
    /* From here a failure leaves no segment open to write to. */
    if (storage_seg_push(s, first) != 0) {
        s->failed = true;
        return CORRAL_ENOMEM;
    }
    char name[NAME_BYTES];
    storage_wal_name(name, first);
    s->fd = openat(s->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        s->n_segs--;
        return check(s, CORRAL_EIO);
    }
    s->file_off = s->alloc_end = 0;
    s->dir_dirty = true;
    uint8_t *p = record_begin(s, REC_SEGMENT_BYTES);
    if (p == NULL)
        return CORRAL_EIO;
    corral_put_le32(p, WAL_MAGIC);
    corral_put_le32(p + 4, CORRAL_STORAGE_FORMAT_VERSION);
    corral_put_le64(p + 8, first);
    record_end(s, REC_SEGMENT, REC_SEGMENT_BYTES);
    return 0;
}

/* Makes the last segment the place for entry index: a new segment when
 * there is none, when the last one does not continue at index (after a
 * snapshot beyond the log), or when it is full. */
static int segment_for_entry(struct corral_storage *s, uint64_t index)
{
    struct segment *seg = storage_seg_last(s);
    if (seg != NULL && seg->first + seg->n == index &&
        (seg->n == 0 || seg->size < s->segment_bytes))
        return 0;
    int rv = roll(s, index);
    assert(rv != 0 || storage_seg_last(s)->first == index);
    return rv;
}

/* What the encoder would refuse, checked before anything is written. */
static int check_entries(const struct corral_storage *s, const struct corral_raft_entry *es,
                         uint32_t n)
{
    uint64_t first = es[0].index;
    if (first <= s->snap_index || first > s->last_index + 1)
        return CORRAL_EINVAL;
    for (uint32_t i = 0; i < n; i++) {
        if (es[i].index != first + i || es[i].type > CORRAL_RAFT_ENTRY_TYPE_MAX)
            return CORRAL_EINVAL;
        if (es[i].data != NULL && es[i].data->len > CORRAL_RAFT_ENTRY_BYTES_MAX)
            return CORRAL_ETOOBIG;
    }
    return 0;
}

static int append_one(struct corral_storage *s, const struct corral_raft_entry *e)
{
    size_t len = corral_codec_entry_size(e);
    int rv = segment_for_entry(s, e->index);
    uint8_t *p = rv == 0 ? record_begin(s, len) : NULL;
    if (p == NULL)
        return rv != 0 ? rv : CORRAL_EIO;
    size_t n;
    rv = corral_codec_entry_encode(e, p, len, &n);
    if (rv != 0)
        return rv;
    assert(n == len); /* the record's length field says len */
    uint64_t off = record_end(s, REC_ENTRY, len);
    rv = storage_seg_add_entry(storage_seg_last(s), off);
    if (rv != 0) {
        s->failed = true; /* the record is written but not indexed */
        return rv;
    }
    assert(storage_seg_last(s)->first + storage_seg_last(s)->n - 1 == e->index);
    s->last_index = e->index;
    return 0;
}

/* Finds the segment holding entry index. */
static uint32_t segment_of(const struct corral_storage *s, uint64_t index)
{
    uint32_t i = s->n_segs;
    while (i > 1 && (s->segs[i - 1].n == 0 || s->segs[i - 1].first > index))
        i--;
    assert(i > 0);
    return i - 1;
}

/* Deletes the segments after i, from the last one back so that a crash
 * midway leaves a contiguous log, and makes the deletion durable. */
static int drop_segments_after(struct corral_storage *s, uint32_t i)
{
    if (s->n_segs == i + 1)
        return 0;
    storage_file_close(&s->fd);
    while (s->n_segs > i + 1) {
        char name[NAME_BYTES];
        storage_wal_name(name, storage_seg_last(s)->first);
        if (unlinkat(s->dir_fd, name, 0) != 0)
            return check(s, CORRAL_EIO);
        storage_seg_free(storage_seg_last(s));
        s->n_segs--;
    }
    return check(s, storage_file_sync_dir(s->dir_fd));
}

/* Cuts segment i at off and makes it the last segment, durably before
 * anything new is written after the cut: otherwise a crash could leave
 * new records followed by stale ones. */
static int cut_segment(struct corral_storage *s, uint32_t i, uint64_t off)
{
    storage_file_close(&s->fd);
    char name[NAME_BYTES];
    storage_wal_name(name, s->segs[i].first);
    s->fd = openat(s->dir_fd, name, O_WRONLY | O_CLOEXEC);
    if (s->fd < 0 || ftruncate(s->fd, (off_t)off) != 0)
        return check(s, CORRAL_EIO);
    s->segs[i].size = off;
    s->file_off = s->alloc_end = off;
    s->dirty = false;
    return check(s, storage_file_datasync(s->fd));
}

/* Removes entries index and later (a new leader overwrote them). The hard
 * state record may be in the part cut away, so it is checkpointed first. */
static int truncate_from(struct corral_storage *s, uint64_t index)
{
    uint32_t i = segment_of(s, index);
    struct segment *seg = &s->segs[i];
    assert(index >= seg->first && index < seg->first + seg->n);
    uint64_t off = seg->offs[index - seg->first];
    int rv = flush(s);
    if (rv != 0)
        return rv;
    if (s->hs_in_wal && (s->hs_seg > seg->first || (s->hs_seg == seg->first && s->hs_off >= off))) {
        rv = check(s, storage_checkpoint_hard_state(s));
        if (rv != 0)
            return rv;
        s->hs_in_wal = false;
    }
    rv = drop_segments_after(s, i);
    if (rv == 0)
        rv = cut_segment(s, i, off);
    if (rv != 0)
        return rv;
    s->segs[i].n = index - s->segs[i].first;
    s->last_index = index - 1;
    return 0;
}

int corral_storage_append(struct corral_storage *s, const struct corral_raft_entry *entries,
                          uint32_t n)
{
    storage_assert_consistent(s);
    if (s->failed)
        return CORRAL_EIO;
    if (n == 0)
        return 0;
    int rv = check_entries(s, entries, n);
    if (rv == 0)
        rv = buf_ensure(s);
    if (rv != 0)
        return rv;
    uint64_t first = entries[0].index;
    rv = first <= s->last_index ? truncate_from(s, first) : 0;
    for (uint32_t i = 0; i < n && rv == 0; i++)
        rv = append_one(s, &entries[i]);
    return rv;
}

int corral_storage_set_hard_state(struct corral_storage *s, const struct corral_raft_hard_state *hs)
{
    storage_assert_consistent(s);
    if (s->failed)
        return CORRAL_EIO;
    int rv = buf_ensure(s);
    if (rv == 0 && s->n_segs == 0)
        rv = roll(s, s->last_index + 1);
    uint8_t *p = rv == 0 ? record_begin(s, CORRAL_CODEC_HARD_STATE_BYTES) : NULL;
    if (p == NULL)
        return rv != 0 ? rv : CORRAL_EIO;
    size_t n;
    rv = corral_codec_hard_state_encode(hs, p, CORRAL_CODEC_HARD_STATE_BYTES, &n);
    if (rv != 0)
        return rv;
    assert(n == CORRAL_CODEC_HARD_STATE_BYTES); /* the record's length */
    s->hs_off = record_end(s, REC_HARD_STATE, CORRAL_CODEC_HARD_STATE_BYTES);
    s->hs_seg = storage_seg_last(s)->first;
    s->hs_in_wal = true;
    s->hs = *hs;
    return 0;
}

int corral_storage_sync(struct corral_storage *s)
{
    storage_assert_consistent(s);
    if (s->failed)
        return CORRAL_EIO;
    int rv = flush(s);
    if (rv == 0 && s->dirty) {
        rv = check(s, storage_file_datasync(s->fd));
        s->dirty = rv != 0;
    }
    if (rv == 0 && s->dir_dirty) {
        rv = check(s, storage_file_sync_dir(s->dir_fd));
        s->dir_dirty = rv != 0;
    }
    if (rv == 0)
        s->syncs++;
    return rv;
}

static int write_snapshot(struct corral_storage *s, const struct corral_raft_snapshot_meta *meta,
                          const struct corral_rbuf *data)
{
    uint8_t head[SNAP_HEADER_BYTES + CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX];
    size_t mlen;
    int rv = corral_codec_snapshot_meta_encode(meta, head + SNAP_HEADER_BYTES,
                                               sizeof(head) - SNAP_HEADER_BYTES, &mlen);
    if (rv != 0)
        return rv;
    corral_put_le32(head, SNAP_MAGIC);
    corral_put_le32(head + 4, CORRAL_STORAGE_FORMAT_VERSION);
    corral_put_le32(head + 8, (uint32_t)mlen);
    uint32_t dlen = data != NULL ? data->len : 0;
    uint8_t dlen_bytes[4], crc_bytes[4];
    corral_put_le32(dlen_bytes, dlen);
    uint32_t crc = corral_crc32c(0, head, SNAP_HEADER_BYTES + mlen);
    crc = corral_crc32c(crc, dlen_bytes, 4);
    crc = corral_crc32c(crc, data != NULL ? data->data : NULL, dlen);
    corral_put_le32(crc_bytes, crc);
    struct piece pieces[] = {
        {head, SNAP_HEADER_BYTES + mlen},
        {dlen_bytes, 4},
        {data != NULL ? data->data : NULL, dlen},
        {crc_bytes, 4},
    };
    char name[NAME_BYTES];
    storage_snap_name(name, meta->index);
    return check(s, storage_file_write_atomic(s->dir_fd, name, pieces, 4));
}

/* Deletes the first n segments; the hard state record goes to its own file
 * first when it is in one of them. */
static int drop_first_segments(struct corral_storage *s, uint32_t n)
{
    if (n == 0)
        return 0;
    if (s->hs_in_wal && (n == s->n_segs || s->hs_seg < s->segs[n].first)) {
        int rv = check(s, storage_checkpoint_hard_state(s));
        if (rv != 0)
            return rv;
        s->hs_in_wal = false;
    }
    if (n == s->n_segs) {
        s->buf_len = 0; /* it all belongs to segments being deleted */
        storage_file_close(&s->fd);
        s->dirty = false;
    }
    for (uint32_t i = 0; i < n; i++) {
        char name[NAME_BYTES];
        storage_wal_name(name, s->segs[i].first);
        if (unlinkat(s->dir_fd, name, 0) != 0)
            return check(s, CORRAL_EIO);
    }
    for (uint32_t i = 0; i < n; i++)
        storage_seg_free(&s->segs[i]);
    memmove(s->segs, s->segs + n, (s->n_segs - n) * sizeof(*s->segs));
    s->n_segs -= n;
    s->dir_dirty = true;
    return 0;
}

/* Drops the WAL at or below index: whole segments only. A snapshot beyond
 * the log leaves no segment, and the log continues at index + 1. */
static int compact(struct corral_storage *s, uint64_t index)
{
    uint32_t n = 0;
    if (index >= s->last_index) {
        n = s->n_segs;
        s->last_index = index;
    } else {
        while (n + 1 < s->n_segs && s->segs[n].first + s->segs[n].n <= index + 1)
            n++;
    }
    int rv = drop_first_segments(s, n);
    if (rv == 0 && s->n_segs == 0)
        rv = check(s, storage_file_sync_dir(s->dir_fd));
    return rv;
}

int corral_storage_save_snapshot(struct corral_storage *s,
                                 const struct corral_raft_snapshot_meta *meta,
                                 struct corral_rbuf *data)
{
    storage_assert_consistent(s);
    if (s->failed)
        return CORRAL_EIO;
    if (meta->index == 0 || meta->index < s->snap_index)
        return CORRAL_EINVAL;
    if (data != NULL && data->len > CORRAL_RAFT_SNAPSHOT_BYTES_MAX)
        return CORRAL_ETOOBIG;
    int rv = write_snapshot(s, meta, data);
    if (rv != 0)
        return rv;
    if (s->snap_index != 0 && s->snap_index != meta->index) {
        char name[NAME_BYTES];
        storage_snap_name(name, s->snap_index);
        unlinkat(s->dir_fd, name, 0); /* a stale snapshot is ignored anyway */
        s->dir_dirty = true;
    }
    s->snap_index = meta->index;
    return compact(s, meta->index);
}

void corral_storage_stats(const struct corral_storage *s, struct corral_storage_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->syncs = s->syncs;
    st->bytes_written = s->bytes_written;
    st->segments = s->n_segs;
    for (uint32_t i = 0; i < s->n_segs; i++) {
        if (s->segs[i].n > 0) {
            st->first_index = s->segs[i].first;
            break;
        }
    }
    st->last_index = s->last_index;
}

void corral_storage_state_free(struct corral_storage_state *st)
{
    for (uint32_t i = 0; i < st->n_entries; i++)
        corral_rbuf_unref(st->entries[i].data);
    corral_free(st->entries);
    corral_rbuf_unref(st->snap_data);
    memset(st, 0, sizeof(*st));
}

void storage_free(struct corral_storage *s)
{
    for (uint32_t i = 0; i < s->n_segs; i++)
        storage_seg_free(&s->segs[i]);
    corral_free(s->segs);
    corral_free(s->buf);
    storage_file_close(&s->fd);
    storage_file_close(&s->lock_fd);
    storage_file_close(&s->dir_fd);
    corral_free(s);
}

void corral_storage_close(struct corral_storage *s)
{
    if (s == NULL)
        return;
    if (!s->failed)
        corral_storage_sync(s); /* best effort: there is no one left to tell */
    storage_free(s);
}
