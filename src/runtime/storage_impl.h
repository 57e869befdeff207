/* Internals of the storage files, included by nothing else but their unit
 * test: the on-disk layouts, the storage object, and the file and record
 * helpers of storage_file.c (prefixed storage_: they link with everything
 * else). storage.c holds the write path, storage_recover.c opening and
 * recovery. */
#ifndef CORRAL_RUNTIME_STORAGE_IMPL_H
#define CORRAL_RUNTIME_STORAGE_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/codec.h"
#include "core/raft.h"

/* WAL record, little endian:
 *
 *     u32 len      payload bytes (<= REC_PAYLOAD_MAX)
 *     u8  type     REC_SEGMENT, REC_ENTRY or REC_HARD_STATE
 *     u8  zero[3]
 *     u32 hcrc     CRC32C of the 8 bytes above
 *     ... payload
 *     u32 crc      CRC32C of the payload, seeded with hcrc
 *
 * The header has its own checksum so that recovery can tell a torn tail
 * from corruption followed by good records: after a bad record it looks
 * for any valid record further on, and only a checked header can be
 * trusted to say where a record ends.
 *
 * Payloads: REC_SEGMENT (first record of every segment, and only there):
 * u32 WAL_MAGIC, u32 format version, u64 first index (= the file name's).
 * REC_ENTRY: a codec entry frame. REC_HARD_STATE: a codec hard state
 * frame. Both frames carry their own version and CRC as well. */
enum {
    REC_SEGMENT = 1,
    REC_ENTRY = 2,
    REC_HARD_STATE = 3,
};
#define REC_HEADER_BYTES 12
#define REC_TRAILER_BYTES 4
#define REC_OVERHEAD (REC_HEADER_BYTES + REC_TRAILER_BYTES)
#define REC_SEGMENT_BYTES 16
#define REC_PAYLOAD_MAX                                                                            \
    (CORRAL_CODEC_FRAME_BYTES + CORRAL_CODEC_ENTRY_OVERHEAD + CORRAL_RAFT_ENTRY_BYTES_MAX)

#define WAL_MAGIC 0x4c41574cu  /* "LWAL" */
#define META_MAGIC 0x4154454du /* "META" */
#define SNAP_MAGIC 0x50414e53u /* "SNAP" */

/* meta: u32 META_MAGIC, u32 version, u64 node id, u64 cluster id, then in
 * version 2 u8 name_len, name, u8 cluster_name_len, cluster name; u32 crc
 * (CRC32C of the bytes before it). Magic and version come first so that a
 * later version may change the rest. Version 1 had no names. */
#define META_V1_BYTES 28
#define META_VERSION 2
#define META_BYTES_MAX (META_V1_BYTES + 2 + 2 * CORRAL_STORAGE_NAME_MAX)

/* snap-<index>.snap: u32 SNAP_MAGIC, u32 version, u32 meta_len, codec
 * snapshot meta frame, u32 data_len, data, u32 crc (CRC32C of everything
 * before it). */
#define SNAP_HEADER_BYTES 12

/* Bounds on what recovery reads into memory. A segment is closed once past
 * the segment size, so it never exceeds that plus one record; anything far
 * larger is not a file this code wrote. Record offsets fit in 32 bits. */
#define SEGMENT_FILE_BYTES_MAX (1u << 30)
#define META_FILE_BYTES_MAX 4096u
#define SNAP_FILE_BYTES_MAX                                                                        \
    ((uint64_t)CORRAL_RAFT_SNAPSHOT_BYTES_MAX + SNAP_HEADER_BYTES +                                \
     CORRAL_CODEC_SNAPSHOT_META_BYTES_MAX + 8)

/* The last segment is preallocated: zeros are written ahead of its
 * records in steps of this many bytes, so a record written later lands in
 * place and its fdatasync flushes data only, not the file's new size (on
 * ext4 about 100 against 140 us here: bench/floor_probe.c). Recovery reads
 * an all-zero tail of the last segment as that unused space; a segment
 * closed by roll-over is cut to its records first. */
#define PREALLOC_BYTES (1u << 20)

/* The write buffer holds at least one largest record, so a record is
 * always built in place. */
#define WRITE_BUF_BYTES (2u << 20)
_Static_assert(WRITE_BUF_BYTES >= REC_PAYLOAD_MAX + REC_OVERHEAD, "a record fits the buffer");

/* File names: "wal-" or "snap-", 16 hex digits, ".log" or ".snap". */
#define NAME_BYTES 32
#define META_NAME "meta"
#define LOCK_NAME "lock"
#define HARD_STATE_NAME "hardstate"
#define TMP_SUFFIX ".tmp"

/* One WAL segment. Its entries are contiguous from first; offs[i] is the
 * offset of the record of entry first + i. */
struct segment {
    uint64_t first;
    uint64_t n;
    uint64_t cap;
    uint32_t *offs;
    uint64_t size; /* bytes, including those still in the write buffer */
};

struct corral_storage {
    int dir_fd;
    int lock_fd;
    int fd;               /* the last segment, open for writing; -1 iff n_segs == 0 */
    uint64_t file_off;    /* the last segment's bytes in its file: where the buffer goes */
    uint64_t alloc_end;   /* its file's size: zeros from file_off to here */
    struct segment *segs; /* by first index; the last is the one written */
    uint32_t n_segs, cap_segs;
    uint8_t
        *buf; /* bytes not yet written to the end of the last segment; NULL until the first write */
    size_t buf_len;
    uint64_t segment_bytes;
    uint64_t snap_index;
    uint64_t last_index;                   /* max(snapshot, last WAL entry) */
    struct corral_raft_hard_state hs;      /* the latest set or loaded */
    struct corral_raft_hard_state ckpt_hs; /* the one in HARD_STATE_NAME */
    /* Where the record of hs is, when it is in the WAL: truncations and
     * deletions that would remove it first checkpoint hs to its own file. */
    bool hs_in_wal;
    uint64_t hs_seg; /* first index of its segment */
    uint64_t hs_off;
    bool dirty;     /* the last segment has writes not yet fdatasync'ed */
    bool dir_dirty; /* the directory has changes not yet fsync'ed */
    bool failed;    /* after an I/O error every call answers CORRAL_EIO */
    int fail_errno; /* errno of the failure that set failed, 0 when none */
    uint64_t syncs;
    uint64_t bytes_written;
};

/* Records. storage_rec_seal writes the header and trailer around len
 * payload bytes already at rec + REC_HEADER_BYTES. storage_rec_parse
 * checks the record at buf[off..len) and sets its type, payload and the
 * offset after it. */
enum rec_status { REC_OK, REC_INCOMPLETE, REC_BAD };
struct rec {
    uint8_t type;
    uint32_t len;
    const uint8_t *payload;
    size_t next;
};
void storage_rec_seal(uint8_t *rec, uint8_t type, uint32_t len);
enum rec_status storage_rec_parse(const uint8_t *buf, size_t len, size_t off, struct rec *out);

/* Names: wal-<first>.log and snap-<index>.snap; the parsers accept exactly
 * that form (16 lowercase hex digits) and return false otherwise. */
void storage_wal_name(char out[NAME_BYTES], uint64_t first);
void storage_snap_name(char out[NAME_BYTES], uint64_t index);
bool storage_parse_wal_name(const char *name, uint64_t *first);
bool storage_parse_snap_name(const char *name, uint64_t *index);

/* True when a is later than b: hard state only moves forward (a term
 * never decreases, a vote is cast once per term, commit only grows). */
bool storage_hs_newer(const struct corral_raft_hard_state *a,
                      const struct corral_raft_hard_state *b);

/* Files, relative to the directory dir_fd. All retry EINTR and short
 * transfers and answer 0 or CORRAL_EIO (with errno kept). */
struct piece {
    const void *p;
    size_t len;
};
int storage_file_write_all(int fd, const void *buf, size_t len);
int storage_file_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* Writes zeros from off to end (preallocation). */
int storage_file_zero(int fd, uint64_t off, uint64_t end);
int storage_file_datasync(int fd);
int storage_file_sync_dir(int dir_fd);
/* Reads all of name into a corral_malloc'ed buffer (NULL when empty).
 * CORRAL_ETOOBIG when larger than max, CORRAL_ENOTFOUND when missing. */
int storage_file_read(int dir_fd, const char *name, uint64_t max, uint8_t **out, size_t *len);
/* Writes the pieces to name.tmp, fsyncs, renames over name and fsyncs the
 * directory: the file is then durably either old or new. */
int storage_file_write_atomic(int dir_fd, const char *name, const struct piece *pieces, size_t n);
/* Opens (creating) name and takes an exclusive flock without waiting:
 * CORRAL_EBUSY when another open file description holds it. */
int storage_file_lock(int dir_fd, const char *name, int *fd_out);
/* mkdir -p. */
int storage_file_mkdirs(const char *path);
void storage_file_close(int *fd);

/* The segment array. storage_seg_push appends an empty segment;
 * storage_seg_add_entry records the offset of its next entry.
 * CORRAL_ENOMEM on failure. */
int storage_seg_push(struct corral_storage *s, uint64_t first);
int storage_seg_add_entry(struct segment *seg, uint64_t off);
void storage_seg_free(struct segment *seg);
struct segment *storage_seg_last(struct corral_storage *s);

/* Encodes hs into HARD_STATE_NAME, durably. */
int storage_checkpoint_hard_state(struct corral_storage *s);

/* Asserts what holds between calls on s (the files, the segment array,
 * the buffer and last_index agree), unless s has failed. O(1). */
void storage_assert_consistent(const struct corral_storage *s);

/* Closes the files and frees s, without a sync. */
void storage_free(struct corral_storage *s);

/* Test hook, 0 = CORRAL_STORAGE_SEGMENT_BYTES. */
uint64_t storage_segment_bytes(void);

#endif
